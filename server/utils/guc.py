"""The settings table (PostgreSQL's GUC): names, types, defaults, units, contexts.

Sources, lowest priority first: the built-in default, ``DIR/postgresql.conf`` (and
``postgresql.auto.conf``), the command line (``-c name=value``, ``--port`` ...), the
client's startup packet options, then SET in the session.  Contexts follow PostgreSQL:
``postmaster`` settings are fixed at server start (SET → 55P02 'parameter "x" cannot
be changed without restarting the server'), ``sighup`` ones only from the files
(SET → 55P02 'parameter "x" cannot be changed now'), ``internal`` are read-only
(55P02 too), ``user``/``superuser`` can be SET.

:class:`GucSettings` is one process's view.  The postmaster builds one from the files
and the command line and every child inherits it through fork; a backend's SETs
stay in its own copy (transactional like PostgreSQL's only as far as SET LOCAL goes:
a SET LOCAL is undone at transaction end; a plain SET inside an aborted transaction
is *kept* — a simplification).

Values are kept parsed (int in the setting's base unit, float, bool, str);
:meth:`GucSettings.get` renders PostgreSQL's SHOW text (``128MB``, ``5min``, ``on``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from pgbundle.server.access.api import SettingInfo
from pgbundle.server.errors import PgError

# ---------------------------------------------------------------------------- definitions


@dataclass(frozen=True, slots=True)
class Guc:
    name: str
    vartype: str  # bool | integer | real | string | enum
    default: Any
    context: str  # internal | postmaster | sighup | superuser-backend | backend | superuser | user
    category: str
    desc: str
    unit: str | None = None  # for integers: 8kB, kB, MB, ms, s, min
    min: float | None = None
    max: float | None = None
    enumvals: tuple[str, ...] | None = None


_G = Guc
_I = 2147483647
_CONN = "Connections and Authentication / Connection Settings"
_RES = "Resource Usage / Memory"
_WAL = "Write-Ahead Log / Settings"
_CKPT = "Write-Ahead Log / Checkpoints"
_BGW = "Resource Usage / Background Writer"
_AV = "Autovacuum"
_LOG = "Reporting and Logging / Where to Log"
_LOGW = "Reporting and Logging / What to Log"
_CLI = "Client Connection Defaults / Statement Behavior"
_LOC = "Client Connection Defaults / Locale and Formatting"
_PRESET = "Preset Options"
_LOCK = "Lock Management"
_STAT = "Statistics / Cumulative Query and Index Statistics"
_QT = "Query Tuning / Planner Method Configuration"
_SSL = "Connections and Authentication / SSL"
_TLS_VERSIONS = ("", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")

DEFINITIONS: tuple[Guc, ...] = (
    # connections
    _G("listen_addresses", "string", "localhost", "postmaster", _CONN,
       "Sets the host name or IP address(es) to listen to."),
    _G("port", "integer", 5432, "postmaster", _CONN, "Sets the TCP port the server listens on.", None, 1, 65535),
    _G("max_connections", "integer", 100, "postmaster", _CONN,
       "Sets the maximum number of concurrent connections.", None, 1, 262143),
    _G("superuser_reserved_connections", "integer", 3, "postmaster", _CONN,
       "Sets the number of connection slots reserved for superusers.", None, 0, 262143),
    _G("unix_socket_directories", "string", "", "postmaster", _CONN,
       "Sets the directories where Unix-domain sockets will be created."),
    _G("authentication_timeout", "integer", 60, "sighup", "Connections and Authentication / Authentication",
       "Sets the maximum allowed time to complete client authentication.", "s", 1, 600),
    _G("password_encryption", "enum", "scram-sha-256", "user", "Connections and Authentication / Authentication",
       "Chooses the algorithm for encrypting passwords.", enumvals=("md5", "scram-sha-256")),
    _G("ssl", "bool", False, "sighup", _SSL, "Enables SSL connections."),
    _G("ssl_cert_file", "string", "server.crt", "sighup", _SSL, "Location of the SSL server certificate file."),
    _G("ssl_key_file", "string", "server.key", "sighup", _SSL, "Location of the SSL server private key file."),
    _G("ssl_ca_file", "string", "", "sighup", _SSL, "Location of the SSL certificate authority file."),
    _G("ssl_crl_file", "string", "", "sighup", _SSL, "Location of the SSL certificate revocation list file."),
    _G("ssl_crl_dir", "string", "", "sighup", _SSL, "Location of the SSL certificate revocation list directory."),
    _G("ssl_dh_params_file", "string", "", "sighup", _SSL, "Location of the SSL DH parameters file."),
    _G("ssl_ciphers", "string", "HIGH:MEDIUM:+3DES:!aNULL", "sighup", _SSL, "Sets the list of allowed SSL ciphers."),
    _G("ssl_prefer_server_ciphers", "bool", True, "sighup", _SSL, "Give priority to server ciphersuite order."),
    _G("ssl_ecdh_curve", "string", "prime256v1", "sighup", _SSL, "Sets the curve to use for ECDH."),
    _G("ssl_min_protocol_version", "enum", "TLSv1.2", "sighup", _SSL,
       "Sets the minimum SSL/TLS protocol version to use.", enumvals=_TLS_VERSIONS[1:]),
    _G("ssl_max_protocol_version", "enum", "", "sighup", _SSL, "Sets the maximum SSL/TLS protocol version to use.",
       enumvals=_TLS_VERSIONS),
    _G("ssl_passphrase_command", "string", "", "sighup", _SSL, "Command to obtain passphrases for SSL."),
    _G("ssl_passphrase_command_supports_reload", "bool", False, "sighup", _SSL,
       "Controls whether ssl_passphrase_command is called during server reload."),
    _G("ssl_library", "string", "OpenSSL", "internal", _PRESET, "Shows the name of the SSL library."),
    _G("hba_file", "string", "", "postmaster", "File Locations", "Sets the server's \"hba\" configuration file."),
    _G("ident_file", "string", "", "postmaster", "File Locations", "Sets the server's \"ident\" configuration file."),
    _G("data_directory", "string", "", "postmaster", "File Locations", "Sets the server's data directory."),
    _G("config_file", "string", "", "postmaster", "File Locations", "Sets the server's main configuration file."),
    # memory
    _G("shared_buffers", "integer", 16384, "postmaster", _RES,
       "Sets the number of shared memory buffers used by the server.", "8kB", 16, 1073741823),
    _G("work_mem", "integer", 4096, "user", _RES,
       "Sets the maximum memory to be used for query workspaces.", "kB", 64, _I),
    _G("maintenance_work_mem", "integer", 65536, "user", _RES,
       "Sets the maximum memory to be used for maintenance operations.", "kB", 1024, _I),
    _G("temp_buffers", "integer", 1024, "user", _RES,
       "Sets the maximum number of temporary buffers used by each session.", "8kB", 100, 1073741823),
    _G("max_locks_per_transaction", "integer", 64, "postmaster", _LOCK,
       "Sets the maximum number of locks per transaction.", None, 10, _I),
    _G("deadlock_timeout", "integer", 1000, "superuser", _LOCK,
       "Sets the time to wait on a lock before checking for deadlock.", "ms", 1, _I),
    _G("lock_timeout", "integer", 0, "user", _CLI,
       "Sets the maximum allowed duration of any wait for a lock.", "ms", 0, _I),
    # WAL
    _G("fsync", "bool", True, "sighup", _WAL, "Forces synchronization of updates to disk."),
    _G("synchronous_commit", "enum", "on", "user", _WAL, "Sets the current transaction's synchronization level.",
       enumvals=("local", "remote_write", "remote_apply", "on", "off")),
    _G("wal_sync_method", "enum", "fdatasync", "sighup", _WAL,
       "Selects the method used for forcing WAL updates to disk.", enumvals=("fsync", "fdatasync", "open_sync",
                                                                             "open_datasync")),
    _G("full_page_writes", "bool", True, "sighup", _WAL,
       "Writes full pages to WAL when first modified after a checkpoint."),
    _G("wal_buffers", "integer", -1, "postmaster", _WAL,
       "Sets the number of disk-page buffers in shared memory for WAL.", "8kB", -1, 262143),
    _G("wal_writer_delay", "integer", 200, "sighup", _WAL, "Time between WAL flushes performed in the WAL writer.",
       "ms", 1, 10000),
    _G("wal_writer_flush_after", "integer", 128, "sighup", _WAL,
       "Amount of WAL written out by WAL writer that triggers a flush.", "8kB", 0, _I),
    _G("commit_delay", "integer", 0, "superuser", _WAL,
       "Sets the delay in microseconds between transaction commit and flushing WAL to disk.", None, 0, 100000),
    _G("commit_siblings", "integer", 5, "user", _WAL,
       "Sets the minimum number of concurrent open transactions required before performing commit_delay.",
       None, 0, 1000),
    _G("wal_level", "enum", "replica", "postmaster", _WAL, "Sets the level of information written to the WAL.",
       enumvals=("minimal", "replica", "logical")),
    _G("wal_segment_size", "integer", 16777216, "internal", _PRESET, "Shows the size of write ahead log segments.",
       "B", 1048576, 1073741824),
    _G("wal_block_size", "integer", 8192, "internal", _PRESET, "Shows the block size in the write ahead log."),
    _G("block_size", "integer", 8192, "internal", _PRESET, "Shows the size of a disk block."),
    # checkpoints
    _G("checkpoint_timeout", "integer", 300, "sighup", _CKPT,
       "Sets the maximum time between automatic WAL checkpoints.", "s", 30, 86400),
    _G("max_wal_size", "integer", 1024, "sighup", _CKPT,
       "Sets the WAL size that triggers a checkpoint.", "MB", 2, _I),
    _G("min_wal_size", "integer", 80, "sighup", _CKPT,
       "Sets the minimum size to shrink the WAL to.", "MB", 2, _I),
    _G("checkpoint_completion_target", "real", 0.9, "sighup", _CKPT,
       "Time spent flushing dirty buffers during checkpoint, as fraction of checkpoint interval.", None, 0, 1),
    _G("checkpoint_warning", "integer", 30, "sighup", _CKPT,
       "Sets the maximum time before warning if checkpoints triggered by WAL volume happen too frequently.",
       "s", 0, _I),
    _G("log_checkpoints", "bool", True, "sighup", _LOGW, "Logs each checkpoint."),
    # bgwriter
    _G("bgwriter_delay", "integer", 200, "sighup", _BGW, "Background writer sleep time between rounds.",
       "ms", 10, 10000),
    _G("bgwriter_lru_maxpages", "integer", 100, "sighup", _BGW,
       "Background writer maximum number of LRU pages to flush per round.", None, 0, 1073741823),
    _G("bgwriter_lru_multiplier", "real", 2.0, "sighup", _BGW,
       "Multiple of the average buffer usage to free per round.", None, 0, 10),
    # autovacuum
    _G("autovacuum", "bool", True, "sighup", _AV, "Starts the autovacuum subprocess."),
    _G("autovacuum_max_workers", "integer", 3, "postmaster", _AV,
       "Sets the maximum number of simultaneously running autovacuum worker processes.", None, 1, 262143),
    _G("autovacuum_naptime", "integer", 60, "sighup", _AV, "Time to sleep between autovacuum runs.",
       "s", 1, 2147483),
    _G("autovacuum_vacuum_threshold", "integer", 50, "sighup", _AV,
       "Minimum number of tuple updates or deletes prior to vacuum.", None, 0, _I),
    _G("autovacuum_vacuum_scale_factor", "real", 0.2, "sighup", _AV,
       "Number of tuple updates or deletes prior to vacuum as a fraction of reltuples.", None, 0, 100),
    _G("autovacuum_vacuum_insert_threshold", "integer", 1000, "sighup", _AV,
       "Minimum number of tuple inserts prior to vacuum, or -1 to disable insert vacuums.", None, -1, _I),
    _G("autovacuum_vacuum_insert_scale_factor", "real", 0.2, "sighup", _AV,
       "Number of tuple inserts prior to vacuum as a fraction of reltuples.", None, 0, 100),
    _G("autovacuum_analyze_threshold", "integer", 50, "sighup", _AV,
       "Minimum number of tuple inserts, updates, or deletes prior to analyze.", None, 0, _I),
    _G("autovacuum_analyze_scale_factor", "real", 0.1, "sighup", _AV,
       "Number of tuple inserts, updates, or deletes prior to analyze as a fraction of reltuples.", None, 0, 100),
    _G("autovacuum_vacuum_cost_delay", "real", 2.0, "sighup", _AV,
       "Vacuum cost delay in milliseconds, for autovacuum.", "ms", -1, 100),
    _G("log_autovacuum_min_duration", "integer", 600000, "sighup", _LOGW,
       "Sets the minimum execution time above which autovacuum actions will be logged.", "ms", -1, _I),
    # logging
    _G("logging_collector", "bool", True, "postmaster", _LOG,
       "Start a subprocess to capture stderr output and/or csvlogs into log files."),
    _G("log_directory", "string", "log", "sighup", _LOG, "Sets the destination directory for log files."),
    _G("log_filename", "string", "postgresql-%Y-%m-%d_%H%M%S.log", "sighup", _LOG,
       "Sets the file name pattern for log files."),
    _G("log_rotation_age", "integer", 1440, "sighup", _LOG,
       "Sets the amount of time to wait before forcing log file rotation.", "min", 0, 35791394),
    _G("log_rotation_size", "integer", 10240, "sighup", _LOG,
       "Sets the maximum size a log file can reach before being rotated.", "kB", 0, 2097151),
    _G("log_destination", "string", "stderr", "sighup", _LOG, "Sets the destination for server log output."),
    _G("log_line_prefix", "string", "%m [%p] ", "sighup", _LOGW,
       "Controls information prefixed to each log line."),
    _G("log_min_messages", "enum", "warning", "superuser", "Reporting and Logging / When to Log",
       "Sets the message levels that are logged.",
       enumvals=("debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice", "warning", "error", "log",
                 "fatal", "panic")),
    _G("log_connections", "bool", False, "superuser-backend", _LOGW, "Logs each successful connection."),
    _G("log_disconnections", "bool", False, "superuser-backend", _LOGW, "Logs end of a session, including duration."),
    _G("log_statement", "enum", "none", "superuser", _LOGW, "Sets the type of statements logged.",
       enumvals=("none", "ddl", "mod", "all")),
    _G("log_min_duration_statement", "integer", -1, "superuser", "Reporting and Logging / When to Log",
       "Sets the minimum execution time above which all statements will be logged.", "ms", -1, _I),
    _G("cluster_name", "string", "", "postmaster", "Reporting and Logging / Process Title",
       "Sets the name of the cluster, which is included in the process title."),
    _G("update_process_title", "bool", True, "superuser", "Reporting and Logging / Process Title",
       "Updates the process title to show the active SQL command."),
    _G("track_activities", "bool", True, "superuser", _STAT, "Collects information about executing commands."),
    _G("track_counts", "bool", True, "superuser", _STAT, "Collects statistics on database activity."),
    _G("track_activity_query_size", "integer", 1024, "postmaster", _STAT,
       "Sets the size reserved for pg_stat_activity.query, in bytes.", "B", 100, 1048576),
    # client defaults
    _G("search_path", "string", '"$user", public', "user", _CLI,
       "Sets the schema search order for names that are not schema-qualified."),
    _G("statement_timeout", "integer", 0, "user", _CLI,
       "Sets the maximum allowed duration of any statement.", "ms", 0, _I),
    _G("idle_in_transaction_session_timeout", "integer", 0, "user", _CLI,
       "Sets the maximum allowed idle time between queries, when in a transaction.", "ms", 0, _I),
    _G("idle_session_timeout", "integer", 0, "user", _CLI,
       "Sets the maximum allowed idle time between queries, when not in a transaction.", "ms", 0, _I),
    _G("default_transaction_isolation", "enum", "read committed", "user", _CLI,
       "Sets the transaction isolation level of each new transaction.",
       enumvals=("serializable", "repeatable read", "read committed", "read uncommitted")),
    _G("transaction_isolation", "enum", "read committed", "user", _CLI,
       "Sets the current transaction's isolation level.",
       enumvals=("serializable", "repeatable read", "read committed", "read uncommitted")),
    _G("default_transaction_read_only", "bool", False, "user", _CLI,
       "Sets the default read-only status of new transactions."),
    _G("transaction_read_only", "bool", False, "user", _CLI, "Sets the current transaction's read-only status."),
    _G("default_transaction_deferrable", "bool", False, "user", _CLI,
       "Sets the default deferrable status of new transactions."),
    _G("transaction_deferrable", "bool", False, "user", _CLI,
       "Whether to defer a read-only serializable transaction until it can be executed with no possible "
       "serialization failures."),
    _G("client_min_messages", "enum", "notice", "user", _CLI,
       "Sets the message levels that are sent to the client.",
       enumvals=("debug5", "debug4", "debug3", "debug2", "debug1", "log", "notice", "warning", "error")),
    _G("check_function_bodies", "bool", True, "user", _CLI,
       "Check routine bodies during CREATE FUNCTION and CREATE PROCEDURE."),
    _G("row_security", "bool", True, "user", _CLI, "Enable row security."),
    _G("default_tablespace", "string", "", "user", _CLI,
       "Sets the default tablespace to create tables and indexes in."),
    _G("vacuum_freeze_min_age", "integer", 50000000, "user", _CLI,
       "Minimum age at which VACUUM should freeze a table row.", None, 0, 1000000000),
    _G("DateStyle", "string", "ISO, MDY", "user", _LOC, "Sets the display format for date and time values."),
    _G("IntervalStyle", "enum", "postgres", "user", _LOC, "Sets the display format for interval values.",
       enumvals=("postgres", "postgres_verbose", "sql_standard", "iso_8601")),
    _G("TimeZone", "string", "Etc/UTC", "user", _LOC,
       "Sets the time zone for displaying and interpreting time stamps."),
    _G("timezone_abbreviations", "string", "Default", "user", _LOC,
       "Selects a file of time zone abbreviations."),
    _G("extra_float_digits", "integer", 1, "user", _LOC,
       "Sets the number of digits displayed for floating-point values.", None, -15, 3),
    _G("client_encoding", "string", "UTF8", "user", _LOC, "Sets the client's character set encoding."),
    _G("lc_messages", "string", "C", "superuser", _LOC, "Sets the language in which messages are displayed."),
    _G("lc_monetary", "string", "C", "user", _LOC, "Sets the locale for formatting monetary amounts."),
    _G("lc_numeric", "string", "C", "user", _LOC, "Sets the locale for formatting numbers."),
    _G("lc_time", "string", "C", "user", _LOC, "Sets the locale for formatting date and time values."),
    _G("default_text_search_config", "string", "pg_catalog.simple", "user", _LOC,
       "Sets default text search configuration."),
    _G("bytea_output", "enum", "hex", "user", _CLI, "Sets the output format for bytea.", enumvals=("escape", "hex")),
    _G("xmloption", "enum", "content", "user", _CLI,
       "Sets whether XML data in implicit parsing and serialization operations is to be considered as "
       "documents or content fragments.", enumvals=("content", "document")),
    _G("application_name", "string", "", "user", "Reporting and Logging / What to Log",
       "Sets the application name to be reported in statistics and logs."),
    _G("jit", "bool", False, "user", "Query Tuning / Other Planner Options", "Allow JIT compilation."),
    _G("enable_seqscan", "bool", True, "user", _QT, "Enables the planner's use of sequential-scan plans."),
    _G("enable_indexscan", "bool", True, "user", _QT, "Enables the planner's use of index-scan plans."),
    _G("enable_hashjoin", "bool", True, "user", _QT, "Enables the planner's use of hash join plans."),
    _G("enable_nestloop", "bool", True, "user", _QT, "Enables the planner's use of nested-loop join plans."),
    _G("enable_mergejoin", "bool", True, "user", _QT, "Enables the planner's use of merge join plans."),
    _G("enable_sort", "bool", True, "user", _QT, "Enables the planner's use of explicit sort steps."),
    _G("default_statistics_target", "integer", 100, "user", "Query Tuning / Other Planner Options",
       "Sets the default statistics target.", None, 1, 10000),
    _G("random_page_cost", "real", 4.0, "user", "Query Tuning / Planner Cost Constants",
       "Sets the planner's estimate of the cost of a nonsequentially fetched disk page.", None, 0, 1.79769e+308),
    _G("max_parallel_workers_per_gather", "integer", 2, "user", "Resource Usage / Asynchronous Behavior",
       "Sets the maximum number of parallel processes per executor node.", None, 0, 1024),
    _G("max_worker_processes", "integer", 8, "postmaster", "Resource Usage / Asynchronous Behavior",
       "Maximum number of concurrent worker processes.", None, 0, 262143),
    _G("max_wal_senders", "integer", 10, "postmaster", "Replication / Sending Servers",
       "Sets the maximum number of simultaneously running WAL sender processes.", None, 0, 262143),
    _G("max_prepared_transactions", "integer", 0, "postmaster", _RES,
       "Sets the maximum number of simultaneously prepared transactions.", None, 0, 262143),
    _G("archive_mode", "enum", "off", "postmaster", "Write-Ahead Log / Archiving",
       "Allows archiving of WAL files using archive_command.", enumvals=("always", "on", "off")),
    _G("archive_command", "string", "", "sighup", "Write-Ahead Log / Archiving",
       "Sets the shell command that will be called to archive a WAL file."),
    _G("summarize_wal", "bool", False, "sighup", "Write-Ahead Log / Summarization",
       "Starts the WAL summarizer process."),
    _G("wal_summary_keep_time", "integer", 14400, "sighup", "Write-Ahead Log / Summarization",
       "Time for which WAL summary files should be kept.", "min", 0, 35791394),
    _G("archive_timeout", "integer", 0, "sighup", "Write-Ahead Log / Archiving",
       "Sets the amount of time to wait before forcing a switch to the next WAL file.", "s", 0, 1073741823),
    _G("io_method", "enum", "worker", "postmaster", "Resource Usage / I/O",
       "Selects the method for executing asynchronous I/O.", enumvals=("sync", "worker")),
    _G("io_workers", "integer", 3, "sighup", "Resource Usage / I/O",
       "Number of IO worker processes, for io_method=worker.",
       None, 1, 32),
    _G("effective_io_concurrency", "integer", 16, "user", "Resource Usage / I/O",
       "Number of simultaneous requests that can be handled efficiently by the disk subsystem.", None, 0, 1000),
    _G("background_workers", "string", "", "postmaster", "Resource Usage / Background Workers",
       "Background workers to start: comma-separated module:function entry points (pgbundle)."),
    _G("bgworker_restart_time", "integer", 10, "postmaster", "Resource Usage / Background Workers",
       "Seconds before a background worker that exited with code 1 is restarted (pgbundle).", "s", -1, 86400),
    _G("restart_after_crash", "bool", True, "sighup", "Error Handling",
       "Reinitialize server after backend crash."),
    _G("max_files_per_process", "integer", 1000, "postmaster", "Resource Usage / Kernel Resources",
       "Sets the maximum number of simultaneously open files for each server process.", None, 64, _I),
    # preset / read-only
    _G("server_version", "string", "15.8", "internal", _PRESET, "Shows the server version."),
    _G("server_version_num", "integer", 150008, "internal", _PRESET, "Shows the server version as an integer."),
    _G("server_encoding", "string", "UTF8", "internal", _PRESET, "Shows the server (database) character set encoding."),
    _G("integer_datetimes", "bool", True, "internal", _PRESET, "Shows whether datetimes are integer based."),
    _G("max_identifier_length", "integer", 63, "internal", _PRESET, "Shows the maximum identifier length."),
    _G("max_index_keys", "integer", 32, "internal", _PRESET, "Shows the maximum number of index keys."),
    _G("lc_collate", "string", "C", "internal", _PRESET, "Shows the collation order locale."),
    _G("lc_ctype", "string", "C", "internal", _PRESET,
       "Shows the character classification and case conversion locale."),
    _G("data_checksums", "bool", False, "internal", _PRESET,
       "Shows whether data checksums are turned on for this cluster."),
    _G("in_hot_standby", "bool", False, "internal", _PRESET, "Shows whether hot standby is currently active."),
    _G("is_superuser", "bool", False, "internal", _PRESET, "Shows whether the current user is a superuser."),
    _G("session_authorization", "string", "", "superuser", _PRESET, "Sets the session user name."),
    _G("standard_conforming_strings", "bool", True, "user", "Version and Platform Compatibility",
       "Causes '...' strings to treat backslashes literally."),
    _G("escape_string_warning", "bool", True, "user", "Version and Platform Compatibility",
       "Warn about backslash escapes in ordinary string literals."),
)

BY_NAME: dict[str, Guc] = {g.name.lower(): g for g in DEFINITIONS}

#: Settings a backend reports with ParameterStatus (PostgreSQL's GUC_REPORT), in order.
REPORTED = ("application_name", "client_encoding", "DateStyle", "default_transaction_read_only", "in_hot_standby",
            "integer_datetimes", "IntervalStyle", "is_superuser", "server_encoding", "server_version",
            "session_authorization", "standard_conforming_strings", "TimeZone")

SERVER_VERSION = "15.8 (pgbundle)"

# ---------------------------------------------------------------------------- units

_MEM_UNITS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_TIME_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000}
_UNIT_RE = re.compile(r"^\s*(-?[0-9.]+(?:[eE][-+]?\d+)?)\s*([a-zA-Z]*)\s*$")


def _unit_base(unit: str) -> tuple[str, float]:
    """('mem'|'time', size of one ``unit`` in bytes or ms)."""
    if unit == "8kB":
        return "mem", 8192
    if unit in _MEM_UNITS:
        return "mem", _MEM_UNITS[unit]
    return "time", _TIME_UNITS[unit]


def _bad(g: Guc, value: str, hint: str | None = None) -> PgError:
    return PgError("22023", f'invalid value for parameter "{g.name}": "{value}"', hint=hint)


def parse_value(g: Guc, value: Any) -> Any:
    """Parse ``value`` (str or already typed) for setting ``g``; PgError 22023 if invalid."""
    if not isinstance(value, str):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    v = value.strip()
    if g.vartype == "bool":
        lv = v.lower().strip("'")
        if lv in ("on", "true", "yes", "1", "t", "y", "tru", "ye"):
            return True
        if lv in ("off", "false", "no", "0", "f", "n", "of", "fa", "fal", "fals"):
            return False
        raise PgError("22023", f'parameter "{g.name}" requires a Boolean value')
    if g.vartype in ("integer", "real"):
        m = _UNIT_RE.match(v.strip("'"))
        if not m:
            raise _bad(g, value)
        num = float(m.group(1))
        unit = m.group(2)
        if unit:
            if not g.unit or g.unit == "B" and unit not in _MEM_UNITS:
                if not g.unit:
                    raise _bad(g, value, hint="This parameter does not accept units.") if False else _bad(g, value)
            kind, size = _unit_base(g.unit or "B")
            try:
                ukind, usize = _unit_base(unit)
            except KeyError:
                hint = ('Valid units for this parameter are "B", "kB", "MB", "GB", and "TB".' if kind == "mem"
                        else 'Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".')
                raise _bad(g, value, hint) from None
            if ukind != kind:
                raise _bad(g, value)
            num = num * usize / size
        if g.vartype == "integer":
            if num != int(num) and not unit:
                raise PgError("22023", f'invalid value for parameter "{g.name}": "{value}"')
            num = int(round(num))
        if (g.min is not None and num < g.min) or (g.max is not None and num > g.max):
            raise PgError("22023", f"{num} is outside the valid range for parameter \"{g.name}\" "
                                   f"({_fmt_num(g.min)} .. {_fmt_num(g.max)})")
        return num
    if g.vartype == "enum":
        lv = v.strip("'").lower()
        assert g.enumvals
        for canonical in g.enumvals:  # PostgreSQL matches case-insensitively and keeps its own spelling
            if canonical.lower() == lv:
                return canonical
        if g.name == "synchronous_commit" and lv in ("true", "yes", "1"):
            return "on"
        if g.name == "synchronous_commit" and lv in ("false", "no", "0"):
            return "off"
        raise PgError("22023", f'invalid value for parameter "{g.name}": "{v}"',
                      hint="Available values: " + ", ".join(g.enumvals) + ".")
    # string
    if len(v) >= 2 and v[0] == "'" and v[-1] == "'":
        v = v[1:-1].replace("''", "'")
    return v


def _fmt_num(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else str(x)


def format_value(g: Guc, value: Any) -> str:
    """PostgreSQL's SHOW text: the largest unit that divides the value exactly."""
    if g.vartype == "bool":
        return "on" if value else "off"
    if g.vartype == "integer" and g.unit and g.unit != "B" and value not in (-1, 0) or (
            g.vartype == "integer" and g.unit == "B" and value > 0):
        kind, size = _unit_base(g.unit)
        base = value * size
        units = (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("kB", 1024), ("B", 1)) if kind == "mem" else (
            ("d", 86400000), ("h", 3600000), ("min", 60000), ("s", 1000), ("ms", 1))
        for name, usize in units:
            if base % usize == 0:
                return f"{int(base // usize)}{name}"
        return str(value)
    if g.vartype == "integer" and g.unit and value == 0 and g.unit in ("ms", "s", "min"):
        return "0"
    if g.vartype == "real":
        return _fmt_num(value) if float(value).is_integer() else repr(value)
    return str(value)


def _setting_text(g: Guc, value: Any) -> str:
    """pg_settings.setting: the raw number in the setting's unit."""
    if g.vartype == "bool":
        return "on" if value else "off"
    if g.vartype == "real":
        return _fmt_num(value) if float(value).is_integer() else repr(value)
    return str(value)


# ---------------------------------------------------------------------------- config files

_LINE_RE = re.compile(r"""^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*('(?:[^']|'')*'|[^#\s]+)?\s*(?:#.*)?$""")


def read_conf_file(path: str) -> list[tuple[str, str, int]]:
    """Parse postgresql.conf-style lines into (name, value, line number).  A malformed
    line raises PgError F0000 naming the file and line."""
    out: list[tuple[str, str, int]] = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return out
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = _LINE_RE.match(s)
        if not m or m.group(2) is None:
            raise PgError("F0000", f'syntax error in file "{path}" line {n}, near token "{s.split()[0]}"')
        val = m.group(2)
        if val.startswith("'"):
            val = val[1:-1].replace("''", "'").replace("\\'", "'")
        out.append((m.group(1), val, n))
    return out


# ---------------------------------------------------------------------------- Settings


class GucSettings:
    """One process's settings: values plus their source and reset value.

    ``get(name)`` → SHOW text; ``value(name)`` → parsed value (int in the setting's
    unit, bool, float, str); ``set(name, value, local=False, source='session')``;
    ``reset(name)``; ``reset_all()``; ``rows()`` → pg_settings rows.  Unknown names:
    42704 'unrecognized configuration parameter "x"'.  Names with a dot (custom
    placeholders, e.g. ``myapp.flag``) are accepted as strings, as PostgreSQL does.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = {k: g.default for k, g in BY_NAME.items()}
        self._source: dict[str, str] = {k: "default" for k in BY_NAME}
        self._file: dict[str, tuple[str, int]] = {}
        self._reset: dict[str, Any] = dict(self._values)
        self._reset_source: dict[str, str] = dict(self._source)
        self._local_undo: list[tuple[str, Any, str]] = []
        self._custom: dict[str, str] = {}
        self.on_change: list[Any] = []  # callbacks(name, value) for settings a backend caches
        self.cmdline: dict[str, str] = {}  # the server's -c options: applied again after each config file read

    def copy(self) -> GucSettings:
        s = GucSettings.__new__(GucSettings)
        s._values = dict(self._values)
        s._source = dict(self._source)
        s._file = dict(self._file)
        s._reset = dict(self._reset)
        s._reset_source = dict(self._reset_source)
        s._local_undo = []
        s._custom = dict(self._custom)
        s.on_change = []
        s.cmdline = dict(self.cmdline)
        return s

    # -- lookup
    @staticmethod
    def definition(name: str) -> Guc:
        g = BY_NAME.get(name.lower())
        if g is None:
            raise PgError("42704", f'unrecognized configuration parameter "{name}"')
        return g

    def value(self, name: str) -> Any:
        key = name.lower()
        if key in self._values:
            return self._values[key]
        if key in self._custom:
            return self._custom[key]
        raise PgError("42704", f'unrecognized configuration parameter "{name}"')

    def __getitem__(self, name: str) -> Any:
        return self.value(name)

    def get(self, name: str) -> str:
        """The SHOW text of ``name``."""
        key = name.lower()
        if key in self._custom and key not in BY_NAME:
            return self._custom[key]
        g = self.definition(name)
        return format_value(g, self._values[key])

    def exists(self, name: str) -> bool:
        return name.lower() in BY_NAME or name.lower() in self._custom

    # -- changes
    def set(self, name: str, value: Any, local: bool = False, source: str = "session") -> None:
        """SET [LOCAL] name = value (``value`` None = DEFAULT)."""
        key = name.lower()
        if key not in BY_NAME:
            if "." in key:
                old = self._custom.get(key)
                if local:
                    self._local_undo.append((key, old, "custom"))
                self._custom[key] = "" if value is None else str(value)
                return
            raise PgError("42704", f'unrecognized configuration parameter "{name}"')
        g = BY_NAME[key]
        if source == "session":
            if g.context == "internal":
                raise PgError("55P02", f'parameter "{g.name}" cannot be changed')
            if g.context == "postmaster":
                raise PgError("55P02", f'parameter "{g.name}" cannot be changed without restarting the server')
            if g.context == "sighup":
                raise PgError("55P02", f'parameter "{g.name}" cannot be changed now')
            if g.context in ("backend", "superuser-backend"):
                raise PgError("55P02", f'parameter "{g.name}" cannot be set after connection start')
        new = self._reset[key] if value is None else parse_value(g, value)
        if local:
            self._local_undo.append((key, self._values[key], self._source[key]))
        self._values[key] = new
        self._source[key] = source if value is not None else self._reset_source[key]
        if source in ("default", "configuration file", "command line", "client", "override"):
            self._reset[key] = new
            self._reset_source[key] = source
        for cb in self.on_change:
            cb(g.name, new)

    def set_internal(self, name: str, value: Any) -> None:
        """Set a preset/read-only value (is_superuser, session_authorization...)."""
        key = name.lower()
        g = BY_NAME[key]
        self._values[key] = parse_value(g, value) if isinstance(value, str) and g.vartype != "string" else value
        self._reset[key] = self._values[key]
        self._source[key] = self._reset_source[key] = "override"

    def reset(self, name: str) -> None:
        key = name.lower()
        if key in self._custom and key not in BY_NAME:
            self._custom.pop(key)
            return
        g = self.definition(name)
        if g.context in ("internal", "postmaster", "sighup"):
            raise PgError("55P02", f'parameter "{g.name}" cannot be changed')
        self._values[key] = self._reset[key]
        self._source[key] = self._reset_source[key]
        for cb in self.on_change:
            cb(g.name, self._values[key])

    def reset_all(self) -> None:
        for key, g in BY_NAME.items():
            if g.context in ("user", "superuser"):
                self._values[key] = self._reset[key]
                self._source[key] = self._reset_source[key]
        self._custom.clear()
        for cb in self.on_change:
            cb("*", None)

    def end_transaction(self) -> None:
        """Undo SET LOCAL changes (called at commit and rollback)."""
        while self._local_undo:
            key, old, src = self._local_undo.pop()
            if src == "custom":
                if old is None:
                    self._custom.pop(key, None)
                else:
                    self._custom[key] = old
                continue
            self._values[key] = old
            self._source[key] = src
            for cb in self.on_change:
                cb(BY_NAME[key].name, old)

    # -- files and command line
    def load_file(self, path: str, *, source: str = "configuration file", strict: bool = True) -> list[str]:
        """Apply a postgresql.conf file; returns warnings for unknown names (strict: raise)."""
        warnings = []
        for name, val, line in read_conf_file(path):
            key = name.lower()
            if key not in BY_NAME:
                if "." in key:
                    self._custom[key] = val
                    continue
                msg = f'unrecognized configuration parameter "{name}" in file "{path}" line {line}'
                if strict:
                    raise PgError("42704", msg)
                warnings.append(msg)
                continue
            self.set(name, val, source=source)
            self._file[key] = (os.path.abspath(path), line)
        return warnings

    def reload_files(self, datadir: str, *, log: Any = None) -> None:
        """SIGHUP: re-read postgresql.conf and postgresql.auto.conf.  Settings the command
        line or this session set keep their value (only their reset value follows the
        file); ``postmaster`` settings are reported and ignored, as PostgreSQL does."""
        import os as _os

        for path in (_os.path.join(datadir, "postgresql.conf"), _os.path.join(datadir, "postgresql.auto.conf")):
            try:
                entries = read_conf_file(path)
            except PgError as e:
                if log:
                    log(e.message)
                return
            for name, val, line in entries:
                key = name.lower()
                g = BY_NAME.get(key)
                if g is None:
                    continue
                try:
                    new = parse_value(g, val)
                except PgError as e:
                    if log:
                        log(e.message)
                    continue
                if g.context in ("postmaster", "internal"):
                    if new != self._values[key] and log:
                        log(f'parameter "{g.name}" cannot be changed without restarting the server')
                    continue
                if self._source[key] == "command line":
                    continue
                if self._source[key] in ("session", "client"):
                    self._reset[key] = new
                    continue
                self._values[key] = new
                self._reset[key] = new
                self._source[key] = self._reset_source[key] = "configuration file"
                self._file[key] = (_os.path.abspath(path), line)

    def apply_options(self, options: dict[str, str], source: str = "command line") -> None:
        for name, val in options.items():
            self.set(name, val, source=source)
            self._file.pop(name.lower(), None)

    # -- views
    def rows(self) -> list[Any]:
        out = []
        for key in sorted(BY_NAME, key=str.lower):
            g = BY_NAME[key]
            val = self._values[key]
            f = self._file.get(key)
            out.append(SettingInfo(
                name=g.name, setting=_setting_text(g, val), unit=g.unit, category=g.category, short_desc=g.desc,
                extra_desc=None, context=g.context, vartype=g.vartype, source=self._source[key],
                min_val=None if g.min is None else _fmt_num(g.min), max_val=None if g.max is None else _fmt_num(g.max),
                enumvals=list(g.enumvals) if g.enumvals else None, boot_val=_setting_text(g, g.default),
                reset_val=_setting_text(g, self._reset[key]), sourcefile=f[0] if f else None,
                sourceline=f[1] if f else None))
        return out

    def show_all(self) -> list[tuple[str, str, str]]:
        """SHOW ALL rows: (name, setting, description)."""
        return [(g.name, self.get(g.name), g.desc) for g in sorted(DEFINITIONS, key=lambda g: g.name.lower())]

    def reported(self) -> list[tuple[str, str]]:
        """ParameterStatus pairs sent at startup."""
        out = []
        for name in REPORTED:
            v = self.get(name)
            if name == "server_version":
                v = SERVER_VERSION
            out.append((name, v))
        return out
