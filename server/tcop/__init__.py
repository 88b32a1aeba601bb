"""tcop"""
