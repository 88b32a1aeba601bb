"""The SQL layer (over the in-memory engine) answers like PostgreSQL 15.

Each script runs statement by statement on a fresh Session and on a fresh
schema of the real PostgreSQL cluster (``pg`` fixture); result rows (text
format), command tags and error SQLSTATEs/messages must be identical.
"""

from __future__ import annotations

import psycopg
import pytest

from pgbundle.shared.protocol import messages as M

SETUP = [
    "create table t (id serial primary key, name text not null, qty int, price numeric(10,2), "
    "flag bool default false, d date, ts timestamp)",
    "insert into t (name, qty, price, flag, d, ts) values ('apple', 3, 1.25, true, '2024-02-29', "
    "'2024-01-02 03:04:05'), ('pear', 5, 0.5, false, '2023-12-31', '2023-12-31 23:59:59.5'), "
    "('plum', null, 2, null, null, null), ('fig', 1, 10.999, true, '2000-01-01', '2000-01-01 00:00:00')",
    "create table u (tid int, label varchar(10), n int8)",
    "insert into u values (1, 'one', 10), (2, 'two', 20), (2, 'deux', 21), (9, 'nine', null)",
]

QUERIES = [
    "select 1", "select 1 + 2 * 3, 7 / 2, 7 % 3, -7 / 2, 2 ^ 10", "select 'a' || 'b', 'x' || 1, 1 || 'y'",
    "select 1.5 + 1, 10 / 4.0, 1 / 3.0, 2.50 * 2, 0.1 + 0.2", "select 1e3, 1.5e-3, 12345678901",
    "select 3 > 2, 'a' < 'b', null = null, null is null, 1 is distinct from null",
    "select * from t order by id", "select id, name from t where qty > 1 order by id desc",
    "select name from t where qty is null",
    "select count(*), count(qty), sum(qty), avg(qty), min(price), max(name) from t",
    "select flag, count(*) from t group by flag order by flag",
    "select flag, count(*) from t group by 1 order by 2 desc, 1",
    "select qty from t order by qty nulls first", "select qty from t order by qty desc",
    "select qty from t order by qty desc nulls last",
    "select name from t order by name limit 2 offset 1", "select distinct flag from t order by 1",
    "select name, price * qty as total from t where price * qty > 2 order by total",
    "select t.name, u.label from t join u on u.tid = t.id order by 1, 2",
    "select t.name, u.label from t left join u on u.tid = t.id order by 1, 2",
    "select t.name, u.label from t right join u on u.tid = t.id order by 1, 2",
    "select t.name, u.label from t full join u on u.tid = t.id order by 1, 2",
    "select count(*) from t, u", "select t.name from t where exists (select 1 from u where u.tid = t.id) order by 1",
    "select name from t where id in (select tid from u) order by 1",
    "select name from t where id not in (1, 2) order by 1",
    "select (select max(n) from u where u.tid = t.id) from t order by id",
    "select name, case when qty > 2 then 'many' when qty is null then 'none' else 'few' end from t order by id",
    "select coalesce(qty, 0), nullif(qty, 3), greatest(qty, 2), least(qty, 2) from t order by id",
    "select upper(name), length(name), substr(name, 2, 2), position('p' in name), replace(name, 'p', 'P') "
    "from t order by id",
    "select lower('ABC'), trim('  x  '), ltrim('xxa', 'x'), lpad('5', 3, '0'), rpad('a', 3), left('hello',"
    " 2), right('hello', 2)",
    "select split_part('a,b,c', ',', 2), repeat('ab', 3), reverse('abc'), initcap('hello world'), md5('abc')",
    "select name like 'p%', name ilike 'P%', name ~ '^a', name !~ 'e' from t order by id",
    "select abs(-5), round(2.5), round(1.2345, 2), trunc(1.99), ceil(1.1), floor(-1.1), mod(7, 3), sqrt(16.0)",
    "select 5 between 1 and 10, 5 not between 6 and 10",
    "select array[1,2,3], array['a','b'], array_length(array[1,2], 1), cardinality(array[1,2,3])",
    "select (array[10,20,30])[2], array_position(array['a','b'], 'b'), array_to_string(array[1,2,3], '-')",
    "select 1 = any(array[1,2]), 3 = all(array[3,3]), 'x' = any('{a,x}')",
    "select d + 1, d - date '2000-01-01', ts + interval '1 day', date_trunc('month', ts) from t where id = 1",
    "select extract(year from d), extract(epoch from ts), date_part('dow', d) from t where id = 1",
    "select interval '1 day 2 hours' + interval '30 minutes', interval '1 year' - interval '1 month'",
    "select '2024-01-01'::date, '12:30'::time, '1.50'::numeric(5,1), 42::text, '42'::int + 1, true::text",
    "select cast(3.7 as int), 3.5::int, 2.5::int, (-2.5)::int, 7::float8 / 2, 1::bool",
    "select 'abc'::varchar(2), 'ab'::char(4) || '|', length('ab  '::char(4))",
    "select generate_series(1, 3)", "select * from generate_series(1, 5, 2) g",
    "select x, y from (values (1, 'a'), (2, 'b')) v(x, y) order by x desc",
    "select unnest(array[3,1,2]) order by 1",
    "select tid, sum(n), string_agg(label, ',' order by label) from u group by tid order by tid",
    "select array_agg(label order by label desc) from u", "select bool_and(flag), bool_or(flag) from t",
    "select tid, count(*) from u group by tid having count(*) > 1",
    "select name from t union select label from u order by 1",
    "select tid from u union all select id from t order by 1",
    "select id from t intersect select tid from u order by 1", "select id from t except select tid from u order by 1",
    "with x as (select id, qty from t where qty is not null) select sum(qty) from x",
    "with recursive r(n) as (select 1 union all select n + 1 from r where n < 5) select sum(n) from r",
    "select name, row_number() over (order by name), rank() over (partition by flag order by id) from t order by name",
    "select tid, sum(n) over (partition by tid), sum(n) over (order by n) from u order by tid, n",
    "select distinct on (tid) tid, label from u order by tid, label",
    "select count(distinct tid) from u", "select sum(qty) filter (where flag) from t",
    "select current_date = current_date, now() = now(), version() like 'PostgreSQL 15%'",
    "select 'a' is not null, not true, true and null, false or null",
    "select to_char is null from (select null::text as to_char) s",
    "select id from t where name in ('apple', 'fig') and (qty > 2 or price > 5) order by id",
    "select json_build_object('a', 1)::text, '{\"b\":1,\"a\":[1,2]}'::jsonb, ('{\"a\":{\"b\":2}}'::jsonb)->'a'->>'b'",
    "select '{1,2}'::int[] @> '{1}', 'abc' similar to 'a%'",
    "select format('%s-%I-%L', 'x', 'Y z', 'q''s'), quote_ident('a b'), concat('a', null, 1), concat_ws(',',"
    " 'a', null, 'b')",
    "select 10::int2 + 1::int4, 2147483647::int8 + 1, pg_typeof(1::int2 + 1), pg_typeof(1 + 1.5)",
    "select t1.id, t2.id from t t1 join t t2 on t2.id = t1.id + 1 order by 1",
    "select id from t t1 where qty = (select max(qty) from t t2 where t2.flag = t1.flag) order by 1",
    "select sum(price), avg(price), sum(n) from t, u where u.tid = t.id",
    "select id, qty from t order by qty is null, qty", "select min(d), max(ts) from t",
    "select 7::numeric / 3, 1::numeric / 7, 100::numeric / 3.0",
    "select date '2020-01-31' + interval '1 month', timestamp '2024-02-29 10:00' - interval '1 year'",
    "select coalesce(null, 'x'), nullif('a', 'a'), 'x' || null, upper(null), null::int + 1",
    "select array(select generate_series(1, 3)), exists(select 1 where false), (select 1 where null)",
    "select 1 in (null, 1), 2 not in (1, null), case 1 when 1 then 'a' end, case when false then 1 end",
    "select x from generate_series(1, 3) x order by x desc limit 1",
    "select string_agg(x::text, ',') from generate_series(1, 3) x",
    "select left('abc', -1), right('abc', -1), round(-2.5), 5 / 2.0, 1::float8 / 3,"
    " 10000000000000000::float8, 1e-7::float8",
    "select avg(price)::numeric(10,2), sum(n)::int from t, u where u.tid = t.id",
    "select max(d) - min(d), extract(dow from date '2024-01-07'), to_timestamp(0), greatest('a', 'b')",
    "select cast('1 day' as interval) * 2, interval '90 minutes', -interval '1 day'",
    "select length('héllo'), octet_length('héllo'), upper('héllo'), 'ß' < 'z'",
    "select id, name from t order by 2 desc limit 1 offset 0", "select t.* from t where id = 1",
    "select (select count(*) from u) as c, count(*) over () from t order by 1 limit 1",
    "select '{\"a\":1}'::json -> 'a', '[1,2,3]'::jsonb -> 1, '{\"a\":[1]}'::jsonb @> '{\"a\":[1]}'",
    "select abs(-2.5::float8), 2 ^ 0.5, trunc(-1.5), sign(-3.0), pi() > 3",
    "select 2.0 ^ 10, 1.5 ^ 2, 10 ^ -2.0, 2 ^ 10, power(9.0, 0.5)",
    "select split_part('x', ',', 5), strpos('hello', 'l'), translate is null from (select null as translate) s",
    "select 'a,b'::text like '%,%', 'A' ilike 'a', 'abc' not like 'a_', 'a_c' like 'a\\_c'",
    "select true and false, not null::bool, null::bool or true, (1 > 2) is false, null is unknown",
    "select 3 % -2, -3 % 2, 7 / -2, (-7) / 2, 2147483647::int8 * 2",
    "select u.label, t.name from u left join t on t.id = u.tid and t.qty > 2 order by 1",
    "select count(*) filter (where qty > 1) as c from t group by flag order by c",
    "select distinct qty % 2 from t where qty is not null order by 1",
    "select id from t where id = any('{1,3}') order by id",
    "select id from t where name = any(array['fig', 'plum']) order by 1",
]

ERRORS = [
    "select * from nosuch", "select nosuch from t", "select 1/0", "select 'x'::int", "selec 1",
    "insert into t (id, name) values (1, 'dup')", "insert into t (name) values (null)",
    "select id from t, u where id = tid and label = 1", "select count(*), name from t",
    "select 99999999999::int", "select name from t where id = 'abc'", "insert into u (label) values ('0123456789a')",
    "select t.nosuch from t", "select x.id from t", "select id from t join u on true where tid = id and id = 'z'",
    "select 1 + 'a'", "select nosuchfn(1)", "update t set nosuch = 1", "select (select id from t)",
]


def _ours(db, sql):
    out = db.q(sql)
    rows, tags, err = [], [], None
    for m in out:
        if isinstance(m, M.DataRow):
            rows.append(tuple(None if v is None else v.decode() for v in m.values))
        elif isinstance(m, M.CommandComplete):
            tags.append(m.tag)
        elif isinstance(m, M.ErrorResponse):
            err = (m.fields["C"], m.fields["M"])
    return rows, tags, err


def _theirs(conn, sql):
    pgc = conn.pgconn
    res = pgc.exec_(sql.encode())
    if res.status == 7:  # FATAL_ERROR
        from psycopg.pq import DiagnosticField as D
        err = (res.error_field(D.SQLSTATE).decode(), res.error_field(D.MESSAGE_PRIMARY).decode())
        pgc.exec_(b"ROLLBACK")
        return [], [], err
    rows = [tuple(None if res.get_value(i, j) is None else res.get_value(i, j).decode() for j in range(res.nfields))
            for i in range(res.ntuples)]
    return rows, [res.command_status.decode()], None


@pytest.fixture(scope="module")
def pgconn(pg):
    conn = psycopg.connect(pg.dsn(), autocommit=True)
    conn.execute("DROP SCHEMA IF EXISTS sqltest CASCADE; CREATE SCHEMA sqltest")
    conn.execute("SET search_path = sqltest; SET TimeZone = 'UTC'")
    for s in SETUP:
        conn.execute(s)
    yield conn
    conn.execute("DROP SCHEMA sqltest CASCADE")
    conn.close()


@pytest.fixture(scope="module")
def ours(client_cls):
    c = client_cls()
    for s in SETUP:
        r = c.q(s)
        assert not any(isinstance(m, M.ErrorResponse) for m in r), r
    return c


@pytest.mark.parametrize("sql", QUERIES)
def test_query_matches_postgres(ours, pgconn, sql):
    assert _ours(ours, sql) == _theirs(pgconn, sql)


@pytest.mark.parametrize("sql", ERRORS)
def test_error_matches_postgres(ours, pgconn, sql):
    o = _ours(ours, sql)
    t = _theirs(pgconn, sql)
    assert o[2] is not None, f"no error from us: {o}"
    assert o[2] == t[2]


SCRIPTS = {
    "on_conflict": [
        "create table oc (id int primary key, v text, n int default 0)",
        "insert into oc values (1, 'a'), (2, 'b')",
        "insert into oc values (1, 'x') on conflict do nothing",
        "insert into oc values (2, 'y') on conflict (id) do update set v = excluded.v, n = oc.n + 1 returning id, v, n",
        "insert into oc values (3, 'z') on conflict (id) do update set v = excluded.v returning *",
        "select * from oc order by id",
    ],
    "insert_select_update_from_delete_using": [
        "create table s1 (id int primary key, v int)", "create table s2 (id int, w int)",
        "insert into s1 select g, g * 10 from generate_series(1, 5) g",
        "insert into s2 values (1, 100), (3, 300), (9, 900)",
        "update s1 set v = s2.w from s2 where s2.id = s1.id returning s1.id, s1.v",
        "delete from s1 using s2 where s2.id = s1.id and s2.w > 200 returning s1.*",
        "select * from s1 order by id",
        "insert into s2 (id, w) select id, v from s1 where v > 20 returning id",
        "select count(*), sum(w) from s2",
    ],
    "alter_truncate": [
        "create table al (a int)", "insert into al values (1), (2)",
        "alter table al add column b text default 'dflt'", "alter table al add column c int",
        "select * from al order by a", "alter table al drop column b", "select * from al order by a",
        "alter table al add primary key (a)", "insert into al values (1, 5)",
        "alter table al alter column c set not null", "update al set c = 0",
        "alter table al alter column c set not null",
        "insert into al (a) values (9)", "truncate al", "select count(*) from al",
    ],
    "lateral_subqueries_ctes": [
        "create table lt (id int, g int)", "insert into lt values (1, 1), (2, 1), (3, 2), (4, 2), (5, 2)",
        "select l.id, x.mx from lt l cross join lateral (select max(id) as mx from lt l2 where l2.g = l.g) x "
        "order by 1",
        "select * from (select g, count(*) c from lt group by g) s where c > 2",
        "with d as (delete from lt where id = 5 returning id) select count(*) from d",
        "with recursive fib(a, b, n) as (select 0, 1, 1 union all select b, a + b, n + 1 from fib where n < 10) "
        "select max(b) from fib",
        "select g, array_agg(id order by id desc), string_agg(id::text, '-') from lt group by g order by g",
        "select id, lag(id) over (order by id), lead(id, 2, -1) over (order by id), "
        "first_value(id) over (partition by g order by id) from lt order by id",
        "select g, count(*) filter (where id > 1), avg(id) from lt group by g having avg(id) > 1 order by 1",
    ],
    "sequences_and_serial": [
        "create table sq (id serial primary key, v text)", "insert into sq (v) values ('a'), ('b') returning id",
        "select currval('sq_id_seq')", "select nextval('sq_id_seq')", "insert into sq (v) values ('c') returning *",
        "create sequence myseq", "select nextval('myseq'), nextval('myseq')",
        "select split_part(pg_get_serial_sequence('sq', 'id'), '.', 2)",
    ],
    "errors_in_dml": [
        "create table er (id int primary key, v varchar(3) not null, n numeric(4,1))",
        "insert into er values (1, 'abcd', 1)", "insert into er values (1, null, 1)",
        "insert into er values (1, 'abc', 12345)", "insert into er values (1, 'ab', 1.25) returning n",
        "insert into er values (1, 'x', 1)", "update er set id = null",
        "insert into er (id, v, nosuch) values (2, 'a', 1)",
        "insert into er values (2, 'a', 'x')",
    ],
}


def _reset_pg(conn, stmts):
    for s in stmts:
        if s.startswith("create table "):
            conn.execute(f"DROP TABLE IF EXISTS {s.split()[2]} CASCADE")
        if s.startswith("create sequence "):
            conn.execute(f"DROP SEQUENCE IF EXISTS {s.split()[2]}")


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_script_matches_postgres(client_cls, pgconn, name):
    stmts = SCRIPTS[name]
    _reset_pg(pgconn, stmts)
    ours = client_cls()
    for sql in stmts:
        o, t = _ours(ours, sql), _theirs(pgconn, sql)
        assert o == t, sql
