"""postmaster"""
