"""The run store's tables (SQLite), and the version of their layout."""

from __future__ import annotations

#: The store's schema version (SQLite ``user_version``): 2 added typed documents; 3 the runs'
#: metadata (meta, note, tags), their printed summary, and compressed arrays (``arrays``).
STORE_VERSION = 3

#: The columns of the events table (shared with the migration that creates it).
EVENTS_COLUMNS = """(
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    procedure TEXT NOT NULL,
    document TEXT NOT NULL,
    version INTEGER NOT NULL,
    done INTEGER NOT NULL,
    total INTEGER NOT NULL,
    wall_time_s REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
)"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    procedure TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    error TEXT,
    resource TEXT,
    identity TEXT,
    chip TEXT,
    protocol_version TEXT,
    software_version TEXT,
    parameters TEXT,
    seed INTEGER,
    host TEXT,
    pid INTEGER,
    meta TEXT,
    note TEXT,
    tags TEXT,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS events {EVENTS_COLUMNS};
CREATE TABLE IF NOT EXISTS arrays (
    run_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    dtype TEXT NOT NULL,
    shape TEXT NOT NULL,
    data BLOB NOT NULL,
    codec TEXT NOT NULL DEFAULT 'raw',
    PRIMARY KEY (run_id, seq, name)
);
"""
