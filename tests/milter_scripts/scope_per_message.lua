-- Scope is decided per message: on one connection from an outside client, an
-- unauthenticated message is accepted at MAIL, an authenticated one is refused, and the
-- next unauthenticated one is accepted at MAIL again (the {auth_authen} of the previous
-- message, dropped by the abort, must not carry over).
dofile(scripts .. "/common.lua")

run("scope_per_message", function()
  local conn = connect()
  hello(conn, {ip = "203.0.113.5", host = "outside.example"})

  local plan = {{nil, "accept"}, {"alice", "reject"}, {nil, "accept"}, {"bob", "reject"}}
  for i, p in ipairs(plan) do
    local user, want = p[1], p[2]
    local m = message("block", "QPER" .. i)
    if user ~= nil then
      m.mail_macros = {"i", "QPER" .. i, "{auth_authen}", user}
    end
    if want == "accept" then
      m.mail_reply = "accept"
      m.step_reply = "accept"
    end
    local r = send(conn, m)
    if want == "accept" then
      check(r == "continue", "message " .. i .. ": end of message answered " .. r)
      expect_no_edits(conn, "message " .. i)
    else
      check(r == "replycode", "message " .. i .. ": expected replycode, got " .. r)
    end
    mt.echo("message " .. i .. " " .. want .. " " .. r)
    ok(mt.abort(conn), "mt.abort")
  end
  mt.disconnect(conn)
end)
