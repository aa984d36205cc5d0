-- Folded header fields: the MTA passes a multi-line field as one value with the line
-- breaks inside (Postfix: "\n" plus the continuation's whitespace; others "\r\n"). The
-- milter must read every address of every line: 40 personal addresses, folded after each
-- 5, in two Cc fields, are still a block.
dofile(scripts .. "/common.lua")

run("folded", function()
  local conn = connect()
  hello(conn)
  for i, eol in ipairs({"\n\t", "\r\n "}) do
    local m = message("clean", "QFOLD" .. i)
    local addrs = personal(1, 40)
    for k = 1, 40, 20 do
      local lines = {}
      for j = k, k + 19, 5 do
        lines[#lines + 1] = table.concat(addrs, ", ", j, j + 4)
      end
      m.headers[#m.headers + 1] = {"Cc", table.concat(lines, "," .. eol)}
    end
    for _, a in ipairs(addrs) do
      m.rcpts[#m.rcpts + 1] = a
    end
    local r = send(conn, m)
    check(r == "replycode", "folded with " .. string.format("%q", eol) .. ": got " .. r)
    expect_smtp_reply(conn, "550", "5.7.1", REASON_BLOCK, "folded message " .. i)
    mt.echo("message " .. i .. " folded " .. r)
    ok(mt.abort(conn), "mt.abort")
  end
  mt.disconnect(conn)
end)
