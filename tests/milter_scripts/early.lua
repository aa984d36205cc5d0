-- Decisions at end of headers (default settings, the attachment rules off). A message its
-- header block settles is answered there, and an MTA then sends no body: a clean
-- single-part message is accepted, a blocking one refused. Everything else is read to
-- its end: a warn (its headers are added at the end of the message), a multipart message,
-- and one nested deeper than [limits] max_mime_depth, which the limits rule (MG002) still
-- reports.
dofile(scripts .. "/common.lua")

local function nested(depth)
  local parts = {}
  for i = 1, depth do
    parts[#parts + 1] = "--b" .. i .. "\r\nContent-Type: multipart/mixed; boundary=\"b"
      .. (i + 1) .. "\"\r\n\r\n"
  end
  return table.concat(parts) .. "--b" .. (depth + 1) .. "\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
end

local function multipart(m, body)
  m.headers[#m.headers + 1] = {"MIME-Version", "1.0"}
  m.headers[#m.headers + 1] = {"Content-Type", "multipart/mixed; boundary=\"b1\""}
  m.body = body
  return m
end

run("early", function()
  local conn = connect()
  hello(conn)
  local cases = {
    {"clean", message("clean", "QEARLY1"), "accept", true},
    {"block", message("block", "QEARLY2"), "replycode", true},
    {"warn", message("warn", "QEARLY3"), "continue", false},
    {"multipart", multipart(message("clean", "QEARLY4"),
      "--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1--\r\n"), "continue", false},
    {"nested", multipart(message("clean", "QEARLY5"), nested(70)), "continue", false},
  }
  for _, case in ipairs(cases) do
    local name, m, want, early = case[1], case[2], case[3], case[4]
    local r = send(conn, m)
    check(r == want, name .. ": expected " .. want .. ", got " .. r)
    check((m.at_eoh == true) == early, name .. ": decided at the wrong stage")
    local verdict = mt.getheader(conn, "X-Mailguard-Verdict", 0)
    mt.echo(name .. " " .. r .. (early and " at end of headers" or " at end of message")
      .. " verdict=[" .. tostring(verdict) .. "]")
    ok(mt.abort(conn), "mt.abort")
  end
  mt.disconnect(conn)
end)
