-- A PII workload for sysbench (benches/pii.sh runs it). Per transaction, on a `users` table
-- whose email (blind-indexed), ssn and phone columns are encrypted by the policy in one
-- database and plaintext in its twin:
--   10 primary-key point selects returning 2 of those columns,
--    1 equality lookup on the email (a blind-index search when encrypted),
--    1 100-row range select returning the email,
--    1 UPDATE of the ssn,
--    1 DELETE and an INSERT of 3 of those values, in BEGIN … COMMIT.
-- `--pii-ps=on` runs them as prepared statements (binary protocol), else as text.

sysbench.cmdline.options = {
  rows = {"Rows in the users table", 10000},
  ["pii-ps"] = {"Prepared statements (binary protocol)", false},
}

local S = {
  point = "SELECT email, ssn FROM users WHERE id = ?",
  search = "SELECT id, name FROM users WHERE email = ?",
  range = "SELECT id, email FROM users WHERE id BETWEEN ? AND ?",
  update = "UPDATE users SET ssn = ? WHERE id = ?",
  delete = "DELETE FROM users WHERE id = ?",
  insert = "INSERT INTO users (id, name, email, ssn, phone) VALUES (?, ?, ?, ?, ?)",
}

local function email(id) return string.format("user%07d@example.com", id) end
local function ssn() return string.format("%03d-%02d-%04d", sysbench.rand.uniform(100, 999),
  sysbench.rand.uniform(10, 99), sysbench.rand.uniform(1000, 9999)) end
local function phone() return string.format("+1-555-%07d", sysbench.rand.uniform(0, 9999999)) end
local function id() return sysbench.rand.uniform(1, sysbench.opt.rows) end

-- Text statements: values quoted as literals.
local function q(v)
  if type(v) == "number" then return tostring(v) end
  return "'" .. v .. "'"
end
local function text(sql, ...)
  local args, i = {...}, 0
  return (sql:gsub("%?", function() i = i + 1; return q(args[i]) end))
end

function thread_init()
  drv = sysbench.sql.driver()
  con = drv:connect()
  if sysbench.opt["pii-ps"] then
    local t = sysbench.sql.type
    stmts, params = {}, {}
    local kinds = {
      point = {t.INT}, search = {{t.VARCHAR, 64}}, range = {t.INT, t.INT},
      update = {{t.VARCHAR, 16}, t.INT}, delete = {t.INT},
      insert = {t.INT, {t.VARCHAR, 64}, {t.VARCHAR, 64}, {t.VARCHAR, 16}, {t.VARCHAR, 16}},
    }
    for name, sql in pairs(S) do
      stmts[name] = con:prepare(sql)
      params[name] = {}
      for i, k in ipairs(kinds[name]) do
        if type(k) == "table" then
          params[name][i] = stmts[name]:bind_create(k[1], k[2])
        else
          params[name][i] = stmts[name]:bind_create(k)
        end
      end
      stmts[name]:bind_param(unpack(params[name]))
    end
  end
end

local function run(name, ...)
  if stmts then
    local args = {...}
    for i, p in ipairs(params[name]) do p:set(args[i]) end
    local rs = stmts[name]:execute()
    if rs then rs:free() end
  else
    con:query(text(S[name], ...))
  end
end

function event()
  con:query("BEGIN")
  for _ = 1, 10 do run("point", id()) end
  run("search", email(id()))
  local from = sysbench.rand.uniform(1, sysbench.opt.rows - 99)
  run("range", from, from + 99)
  run("update", ssn(), id())
  local victim = id()
  run("delete", victim)
  run("insert", victim, "user " .. victim, email(victim), ssn(), phone())
  con:query("COMMIT")
end

function thread_done()
  if stmts then for _, s in pairs(stmts) do s:close() end end
  con:disconnect()
end
