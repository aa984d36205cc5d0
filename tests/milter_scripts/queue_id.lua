-- Postfix sends the queue id `i` with the end-of-header and end-of-message macros
-- (milter_end_of_header_macros, milter_end_of_data_macros) -- at MAIL it is usually not
-- known yet. The decision log must pick it up from those stages too, and a message that
-- sends no `i` must not inherit the previous one's.
dofile(scripts .. "/common.lua")

run("queue_id", function()
  local conn = connect()
  hello(conn)
  local m = message("block")
  m.eom_macros = {"i", "QEOM1"}
  local r = send(conn, m)
  check(r == "replycode", "expected replycode, got " .. r)
  ok(mt.abort(conn), "mt.abort")

  r = send(conn, message("clean"))
  check(r == "continue", "expected continue, got " .. r)
  ok(mt.abort(conn), "mt.abort")

  m = message("clean")
  m.eoh_macros = {"i", "QEOH3"}
  r = send(conn, m)
  check(r == "continue", "expected continue, got " .. r)
  mt.echo("eom block replycode, clean continue, clean " .. r)
  mt.disconnect(conn)
end)
