"""The API service's tables in ``db_v2.sqlite3``, beside hbbs's ``peer`` table.

Every table is prefixed ``api_`` and created by versioned migrations of component "api",
so the official hbbs, which only knows ``peer``, still opens the file. The ``peer`` table
is read (identity of devices) and never altered; per-device data lives in ``api_device``
keyed by ``peer.guid``, which survives an ID change.

Times are Unix seconds (REAL). Booleans are 0/1 integers. Names compare
case-insensitively (``collate nocase``), as admins expect of user names.
"""

from __future__ import annotations

from pyhbb.store.database import Migration

COMPONENT = "api"

V1_TABLES = (
    """create table api_user (
        id integer primary key,
        guid blob not null unique,
        name text not null unique collate nocase,
        display_name text not null default '',
        email text not null default '',
        note text not null default '',
        password text not null,
        is_admin integer not null default 0,
        status integer not null default 1,
        created_at real not null
    )""",
    # One token per user and device (id, uuid); only the SHA-256 of the token is stored.
    """create table api_token (
        hash blob primary key,
        user_id integer not null references api_user (id) on delete cascade,
        device_id text not null,
        device_uuid text not null,
        created_at real not null,
        used_at real not null,
        expires_at real not null,
        unique (user_id, device_id, device_uuid)
    )""",
    "create index api_token_user on api_token (user_id)",
    """create table api_login_log (
        id integer primary key,
        at real not null,
        user_id integer references api_user (id) on delete set null,
        name text not null,
        ip text not null,
        device_id text not null,
        device_uuid text not null,
        os text not null default '',
        ok integer not null
    )""",
    "create index api_login_log_device on api_login_log (device_id, device_uuid, at)",
    """create table api_device_group (
        id integer primary key,
        name text not null unique collate nocase,
        note text not null default ''
    )""",
    # Extra data of a rendezvous peer (peer.guid): sysinfo, owner, group, API last seen.
    """create table api_device (
        guid blob primary key,
        owner_id integer references api_user (id) on delete set null,
        group_id integer references api_device_group (id) on delete set null,
        sysinfo text,
        sysinfo_at real,
        hostname text not null default '',
        os text not null default '',
        username text not null default '',
        version text not null default '',
        last_seen real,
        last_ip text not null default ''
    ) without rowid""",
    "create index api_device_owner on api_device (owner_id)",
    "create index api_device_group_idx on api_device (group_id)",
    """create table api_ab (
        id integer primary key,
        guid text not null unique,
        owner_id integer not null references api_user (id) on delete cascade,
        personal integer not null,
        name text not null,
        note text not null default '',
        created_at real not null
    )""",
    "create unique index api_ab_personal on api_ab (owner_id) where personal = 1",
    # user_id null = everyone. rule: 1 read, 2 read/write, 3 full control.
    """create table api_ab_rule (
        ab_id integer not null references api_ab (id) on delete cascade,
        user_id integer references api_user (id) on delete cascade,
        rule integer not null check (rule between 1 and 3)
    )""",
    "create unique index api_ab_rule_user on api_ab_rule (ab_id, user_id) "
    "where user_id is not null",
    "create unique index api_ab_rule_all on api_ab_rule (ab_id) where user_id is null",
    "create index api_ab_rule_by_user on api_ab_rule (user_id)",
    # An entry keeps the ID *text*: it may name a peer of another server.
    """create table api_ab_peer (
        id integer primary key,
        ab_id integer not null references api_ab (id) on delete cascade,
        peer_id text not null,
        alias text not null default '',
        tags text not null default '[]',
        note text not null default '',
        hash text not null default '',
        password text not null default '',
        username text not null default '',
        hostname text not null default '',
        platform text not null default '',
        force_always_relay text not null default '',
        rdp_port text not null default '',
        rdp_username text not null default '',
        login_name text not null default '',
        same_server integer,
        unique (ab_id, peer_id)
    )""",
    """create table api_ab_tag (
        ab_id integer not null references api_ab (id) on delete cascade,
        name text not null,
        color integer not null,
        primary key (ab_id, name)
    ) without rowid""",
    # Audit events, append-only. ``conn_ref`` is the id of the "new" event that opened
    # the connection an event belongs to (the join by conn_id, done once at insert).
    """create table api_audit_conn (
        id integer primary key,
        at real not null,
        device_id text not null,
        device_guid blob,
        conn_id integer,
        conn_ref integer,
        session_id text not null default '',
        action text not null default '',
        ip text not null default '',
        peer_id text not null default '',
        peer_name text not null default '',
        type integer,
        note text not null default '',
        user_id integer references api_user (id) on delete set null,
        nonce text,
        body text not null
    )""",
    "create unique index api_audit_conn_nonce on api_audit_conn (device_id, nonce) "
    "where nonce is not null",
    "create index api_audit_conn_join on api_audit_conn (device_id, conn_id, id)",
    """create table api_audit_file (
        id integer primary key,
        at real not null,
        device_id text not null,
        device_guid blob,
        conn_id integer,
        peer_id text not null default '',
        type integer,
        path text not null default '',
        is_file integer,
        info text not null default '',
        nonce text,
        body text not null
    )""",
    "create unique index api_audit_file_nonce on api_audit_file (device_id, nonce) "
    "where nonce is not null",
    """create table api_audit_alarm (
        id integer primary key,
        at real not null,
        device_id text not null,
        device_guid blob,
        conn_id integer,
        typ integer,
        info text not null default '',
        nonce text,
        body text not null
    )""",
    "create unique index api_audit_alarm_nonce on api_audit_alarm (device_id, nonce) "
    "where nonce is not null",
)

# The web console: server-side browser sessions (only the SHA-256 of the cookie is
# stored, as for API tokens), and indexes for its filtered, paged views.
V2_CONSOLE = (
    """create table api_console_session (
        hash blob primary key,
        user_id integer not null references api_user (id) on delete cascade,
        created_at real not null,
        used_at real not null,
        expires_at real not null,
        ip text not null default '',
        agent text not null default ''
    ) without rowid""",
    "create index api_console_session_user on api_console_session (user_id)",
    "create index api_audit_conn_ref on api_audit_conn (conn_ref)",
    "create index api_audit_file_device on api_audit_file (device_id, id)",
    "create index api_audit_alarm_device on api_audit_alarm (device_id, id)",
    "create index api_login_log_user on api_login_log (user_id, id)",
)

MIGRATIONS = (
    Migration(COMPONENT, 1, "accounts, address books, devices, audit", V1_TABLES),
    Migration(COMPONENT, 2, "web console sessions and log indexes", V2_CONSOLE),
)
