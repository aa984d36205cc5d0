-- Case 3: several messages on one connection, with an abort after each one as Postfix
-- sends it. Clean, risky, clean: continue, replycode, continue -- the risky message's
-- verdict and headers must not leak into the next one.
dofile(scripts .. "/common.lua")

run("several_messages", function()
  local conn = connect()
  hello(conn)
  local expected = {
    {"clean", "QSEV1", "continue"},
    {"block", "QSEV2", "replycode"},
    {"clean", "QSEV3", "continue"},
    {"warn", "QSEV4", "continue"},
    {"clean", "QSEV5", "continue"},
  }
  for i, e in ipairs(expected) do
    local kind, qid, want = e[1], e[2], e[3]
    local r = send(conn, message(kind, qid))
    check(r == want, "message " .. i .. " (" .. kind .. "): expected " .. want .. ", got " .. r)
    if kind == "block" then
      expect_smtp_reply(conn, "550", "5.7.1", REASON_BLOCK, "message " .. i)
      expect_no_edits(conn, "message " .. i)
    elseif kind == "warn" then
      expect_header(conn, "X-Mailguard-Verdict", "warn", "message " .. i)
    else
      expect_no_edits(conn, "message " .. i)
      check(not mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", REASON_BLOCK),
        "message " .. i .. ": the earlier refusal was repeated")
    end
    mt.echo("message " .. i .. " " .. kind .. " " .. r)
    ok(mt.abort(conn), "mt.abort")
  end
  mt.disconnect(conn)
end)
