create table author (id serial primary key, name varchar(50) not null unique, born date, note text default 'n/a');
comment on table author is 'writers';
comment on column author.name is 'full name';
create table book (id bigserial primary key, author_id int not null references author(id) on delete cascade, title text not null, price numeric(10,2) default 9.99 check (price >= 0), tags text[], meta jsonb, created timestamptz default now());
create index book_title_idx on book (title);
create index book_ap on book (author_id, price desc);
create type mood as enum ('sad', 'ok', 'happy');
create table person (id int primary key, m mood, flag boolean not null default true, c char(3), v varchar, ival interval, b bytea, f float8, r real, s smallint, u uuid);
create schema other;
create table other.t1 (a int, b text);
create view bview as select id, title from book;
create sequence myseq start 5 increment 2;
insert into author (name, born) values ('Ann', '1950-01-02'), ('Bob', null);
insert into book (author_id, title, price, tags, meta) values (1, 'A', 10, '{x,y}', '{"k": 1}'), (2, 'B', 20.5, null, null);
\d
\dt
\di
\ds
\dv
\dT
\d author
\d+ author
\d book
\d person
\d other.t1
\d bview
\dt other.*
\d book_title_idx
\x
select * from author order by id;
\x
\timing on
select count(*) from book;
\timing off
\copy author to stdout
\copy author (name) from stdin
Carl
Dora
\.
\copy (select name from author order by id) to stdout with csv header
select * from author order by id;
