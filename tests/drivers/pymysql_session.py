"""A PyMySQL session whose every observable outcome is printed as JSON, so the Rust test
can run it directly against MariaDB and through myveil and compare the two outputs.

Usage: pymysql_session.py HOST PORT USER PASSWORD DATABASE CSV_PATH
"""
import json
import sys

import pymysql
from pymysql.constants import CLIENT

host, port, user, password, database, csv_path = sys.argv[1:7]
out = []


def record(label, cur, rows=None):
    out.append({
        "label": label,
        "description": [list(d) for d in (cur.description or [])],
        "rowcount": cur.rowcount,
        "lastrowid": cur.lastrowid,
        "rows": [[v.hex() if isinstance(v, (bytes, bytearray)) else str(v) for v in r] for r in (rows or [])],
    })


conn = pymysql.connect(host=host, port=int(port), user=user, password=password, database=database,
                       charset="utf8mb4", local_infile=True, client_flag=CLIENT.MULTI_STATEMENTS,
                       autocommit=False)
cur = conn.cursor()
cur.execute("CREATE TABLE people (id INT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(100) UNIQUE, "
            "name VARCHAR(100), photo LONGBLOB, born DATE, balance DECIMAL(10,2))")
cur.execute("INSERT INTO people (email, name, born, balance) VALUES (%s, %s, %s, %s)",
            ("a@example.com", "Zoë 🎉", "1990-05-01", "12.30"))
record("insert", cur)
cur.executemany("INSERT INTO people (email, name, balance) VALUES (%s, %s, %s)",
                [("b@example.com", None, 1), ("c@example.com", "O'Brien \\ \"q\"", -2)])
record("executemany", cur)
cur.execute("UPDATE people SET balance = balance WHERE id = 1")
record("update-unchanged (found rows)", cur)
cur.execute("INSERT INTO people (email, photo) VALUES (%s, %s)", ("blob@example.com", bytes(range(256)) * 20000))
record("blob", cur)
conn.commit()
cur.execute("SELECT id, email, name, LENGTH(photo), MD5(photo), born, balance FROM people ORDER BY id")
record("select", cur, cur.fetchall())
cur.execute("INSERT INTO people (email) VALUES ('rolled@example.com')")
conn.rollback()
cur.execute("SELECT COUNT(*) FROM people")
record("after rollback", cur, cur.fetchall())
try:
    cur.execute("INSERT INTO people (email) VALUES ('a@example.com')")
except pymysql.MySQLError as e:
    out.append({"label": "duplicate", "error": list(e.args)})
cur.execute(f"LOAD DATA LOCAL INFILE '{csv_path}' INTO TABLE people FIELDS TERMINATED BY ',' (email, name)")
record("load data", cur)
conn.commit()
cur.execute("SELECT 1 AS one; SELECT email FROM people WHERE id = 2; UPDATE people SET name = 'x' WHERE id = 3")
sets = 0
while True:
    record(f"multi {sets}", cur, cur.fetchall())
    sets += 1
    if not cur.nextset():
        break
cur.execute("CREATE PROCEDURE counts() BEGIN SELECT COUNT(*) FROM people; SELECT MAX(id) FROM people; END")
cur.callproc("counts")
record("callproc 1", cur, cur.fetchall())
cur.nextset()
record("callproc 2", cur, cur.fetchall())
while cur.nextset():
    pass
cur.execute("SELECT @@autocommit, DATABASE() IS NOT NULL, CONNECTION_ID() = %s AS same_id", (conn.thread_id(),))
record("session", cur, cur.fetchall())
conn.ping()
conn.select_db("information_schema")
cur.execute("SELECT DATABASE()")
record("select_db", cur, cur.fetchall())
conn.close()
print(json.dumps(out, indent=1, sort_keys=True))
