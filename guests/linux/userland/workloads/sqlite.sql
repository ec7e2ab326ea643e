-- The SQLite workload: a table of 20 000 rows built in one transaction, an index, an update and
-- a delete in another, aggregates that depend on every row, and SQLite's own integrity check.
PRAGMA journal_mode=DELETE;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
INSERT INTO t(k, v) SELECT (x * 7919) % 1000, hex(x * 2654435761) FROM c;
COMMIT;
CREATE INDEX tk ON t(k);
BEGIN;
UPDATE t SET k = k + 1 WHERE id % 3 = 0;
DELETE FROM t WHERE id % 10 = 0;
COMMIT;
SELECT 'rows', count(*), sum(k), sum(length(v)) FROM t;
SELECT 'top', k, count(*) FROM t GROUP BY k ORDER BY count(*) DESC, k LIMIT 3;
SELECT 'check', * FROM pragma_integrity_check;
