-- Case 11: two MTA connections at once, their steps interleaved; each message is judged on
-- its own (a: risky, b: clean, c: warn), whichever finishes first.
dofile(scripts .. "/common.lua")

run("concurrent", function()
  local a, b, c = connect(), connect(), connect()
  hello(a)
  hello(b)
  hello(c, {ip = "::1", host = "localhost6"})
  local ma, mb, mc = message("block", "QCONA"), message("clean", "QCONB"), message("warn", "QCONC")

  -- Interleave: envelope of a, envelope of b, headers of b, headers of a, ...
  local function envelope(conn, m)
    ok(mt.macro(conn, SMFIC_MAIL, table.unpack(m.mail_macros)), "mt.macro(MAIL)")
    ok(mt.mailfrom(conn, "<" .. SENDER .. ">"), "mt.mailfrom")
    expect(conn, "continue", "MAIL")
    for _, r in ipairs(m.rcpts) do
      ok(mt.rcptto(conn, "<" .. r .. ">"), "mt.rcptto")
    end
  end
  local function headers(conn, m)
    for _, h in ipairs(m.headers) do
      header(conn, h[1], h[2])
    end
    if not mt.test_option(conn, SMFIP_NOEOH) then
      ok(mt.eoh(conn), "mt.eoh")
    end
  end
  envelope(a, ma)
  envelope(b, mb)
  envelope(c, mc)
  headers(b, mb)
  headers(a, ma)
  ok(mt.bodystring(a, BODY), "body a")
  headers(c, mc)
  ok(mt.bodystring(b, BODY), "body b")
  ok(mt.bodystring(c, BODY), "body c")

  ok(mt.eom(b), "eom b")
  expect(b, "continue", "b (clean)")
  expect_no_edits(b, "b (clean)")
  ok(mt.eom(a), "eom a")
  expect(a, "replycode", "a (risky)")
  expect_smtp_reply(a, "550", "5.7.1", REASON_BLOCK, "a (risky)")
  ok(mt.eom(c), "eom c")
  expect(c, "continue", "c (warn)")
  expect_header(c, "X-Mailguard-Verdict", "warn", "c (warn)")
  check(not mt.eom_check(b, MT_HDRADD), "b got c's headers")
  mt.echo("eom b continue, a replycode, c continue+warn")

  -- Second round on the same connections with the roles swapped.
  ok(mt.abort(a), "abort a")
  ok(mt.abort(b), "abort b")
  send_headers(a, message("clean", "QCONA2"))
  send_headers(b, message("block", "QCONB2"))
  local ra = send_body(a, message("clean", "QCONA2"))
  local rb = send_body(b, message("block", "QCONB2"))
  check(ra == "continue", "a (now clean): " .. ra)
  check(rb == "replycode", "b (now risky): " .. rb)
  expect_no_edits(a, "a (now clean)")
  mt.echo("round 2 a " .. ra .. ", b " .. rb)
  mt.disconnect(a)
  mt.disconnect(b)
  mt.disconnect(c)
end)
