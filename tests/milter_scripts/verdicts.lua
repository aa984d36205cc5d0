-- One message of each kind, for comparing the milter's decisions with `mailguard check`.
dofile(scripts .. "/common.lua")

run("verdicts", function()
  local conn = connect()
  hello(conn)
  local want = {clean = "continue", warn = "continue", block = "replycode", bcc = "continue"}
  for _, kind in ipairs({"clean", "warn", "block", "bcc"}) do
    local m = message(kind, "QVER-" .. kind)
    local r = send(conn, m)
    check(r == want[kind], kind .. ": expected " .. want[kind] .. ", got " .. r)
    mt.echo(kind .. " " .. r)
    ok(mt.abort(conn), "mt.abort")
  end
  mt.disconnect(conn)
end)
