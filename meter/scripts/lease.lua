-- lease.lua: takes, spends, resizes, renews and closes a gateway's lease, a
-- hold that one gateway spends locally, request by request.
--
-- KEYS[1..5] the account (lib.lua); KEYS[6] the lease's record.
-- ARGV[1..3] common (lib.lua); ARGV[4] op; ARGV[5] sequence number;
-- ARGV[6] ttl in ms; ARGV[7] grow (add up to this many tokens); ARGV[8]
-- shrink (give back exactly this many); ARGV[9] close, "0" or "1"; ARGV[10]
-- drain window in ms; ARGV[11] the number of charges; ARGV[12] the number
-- of refunds; then each charge as method, route, price line, amount, count;
-- then each refund as the sequence number of the call that charged it, price
-- line, amount, count. Usage counts each charge and refund under its line.
--
-- Sequence number 1 takes the lease: it holds up to grow tokens, at least
-- 1, from the balance. Each later call charges its charges from the lease,
-- one charge entry each, carrying the op followed by the sequence number;
-- gives back its refunds, one refund entry each, carrying the op followed by
-- the sequence number of the call that charged them; then gives back shrink
-- tokens, or adds up to grow, and renews the lease to ttl from now. Close
-- releases all the lease still holds and closes it. A call that leaves the
-- lease holding nothing keeps it open without a hold (the record's z), so
-- that later calls may still refund what it charged, or grow it again. A
-- closed or expired lease takes calls of refunds alone, as long as its
-- record lives; any other call on it is GONE.
--
-- Reply: {'OK', charged, refunded, added, released, held, balance, expires,
-- draining, replayed}, or an error reply (lib.lua). Repeating the last
-- sequence number replies with its first result; an older one replies with
-- the lease as it is, changing nothing. draining is 1 when a request was
-- refused for the balance within the drain window while tokens were held.

local function reply(rec, replayed)
	return {'OK', rec.qc, rec.qf, rec.qa, rec.qr, rec.qh, rec.qb, rec.qe, rec.qd, replayed and 1 or 0}
end

local function run()
	local op, seq, ttl, grow, shrink, close = ARGV[4], int(ARGV[5]), int(ARGV[6]), int(ARGV[7]), int(ARGV[8]), ARGV[9]
	local drain, nc, nr = int(ARGV[10]), int(ARGV[11]), int(ARGV[12])
	if not seq or seq < 1 then
		return invalid('seq must be an integer in [1, 2^53-1]')
	end
	if not ttl or ttl < 1 then
		return invalid('ttl must be a positive integer')
	end
	if not grow or not shrink or (grow > 0 and shrink > 0) then
		return invalid('grow and shrink must be integers in [0, 2^53-1], not both above 0')
	end
	if close ~= '0' and close ~= '1' then
		return invalid('close must be 0 or 1')
	end
	if not drain or not nc or not nr or #ARGV ~= 12 + 5 * nc + 4 * nr then
		return invalid('bad drain window or counts of charges and refunds')
	end
	local charges, refunds, charge, refund = {}, {}, 0, 0
	for i = 0, nc - 1 do
		local b = 13 + 5 * i
		local amount, count = int(ARGV[b + 3]), int(ARGV[b + 4])
		if not amount or amount < 1 or not count or count < 1 then
			return invalid('a charge needs a positive amount and count')
		end
		charge = charge + amount
		charges[#charges + 1] = {ARGV[b], ARGV[b + 1], amount, count, ARGV[b + 2]}
	end
	for i = 0, nr - 1 do
		local b = 13 + 5 * nc + 4 * i
		local rseq, amount, count = int(ARGV[b]), int(ARGV[b + 2]), int(ARGV[b + 3])
		if not rseq or rseq < 2 or rseq >= seq or not amount or amount < 1 or not count or count < 1 then
			return invalid('a refund needs an earlier call, a positive amount and count')
		end
		refund = refund + amount
		refunds[#refunds + 1] = {rseq, amount, count, ARGV[b + 1]}
	end
	if charge > MAX or refund > MAX then
		return invalid('charges or refunds exceed 2^53-1')
	end
	local err = begin()
	if err then
		return err
	end
	local rec
	rec, err = oprecord('l', false)
	if err then
		return err
	end
	if not rec then
		if seq ~= 1 then
			return {'NOTFOUND', 'no such lease'}
		end
		if grow < 1 or shrink > 0 or close == '1' or nc > 0 or nr > 0 then
			return invalid('the first call only takes the lease, of at least 1 token')
		end
		create()
		local bal = balance()
		local add = math.min(grow, bal)
		if add < 1 then
			return {'INSUFFICIENT', bal, 1, A.hd}
		end
		local expires = NOW + ttl
		A.hd = A.hd + add
		redis.call('HSET', KEYS[3], op, fmt(add))
		schedule(op, expires)
		entry('hold', add, op, 'm', '', 'r', '', 'rs', 'lease')
		rec = {k = 'l', s = 'o', q = 1, tc = 0, tr = 0, qc = 0, qf = 0, qa = add, qr = 0, qh = add,
			qb = balance(), qe = expires, qd = 0}
		store(rec, ttl + OPTTL)
		return reply(rec, false)
	end
	if seq == rec.q then
		return reply(rec, true)
	end
	local held = redis.call('HGET', KEYS[3], op)
	if seq < rec.q then
		local expires = tonumber(redis.call('ZSCORE', KEYS[4], op) or '0')
		return {'OK', 0, 0, 0, 0, tonumber(held or '0'), balance(), expires, 0, 1}
	end
	local lapsed = rec.s ~= 'o' or (not held and rec.z ~= 1)
	if lapsed then
		-- A closed or expired lease takes refunds alone, of what it charged.
		if nc > 0 or nr == 0 or grow > 0 or shrink > 0 or close == '1' then
			return {'GONE'}
		end
		held = 0
	else
		held = tonumber(held or '0')
	end
	if charge > held then
		return invalid('charges exceed what the lease holds')
	end
	if refund > rec.tc + charge - rec.tr then
		return invalid('refunds exceed what the lease charged')
	end
	if shrink > held - charge then
		return invalid('shrink exceeds what the lease holds')
	end
	if A.rf + refund > MAX then
		return invalid('refunded total would exceed 2^53-1')
	end
	for i = 1, #charges do
		local c = charges[i]
		A.ch, A.hd, held = A.ch + c[3], A.hd - c[3], held - c[3]
		entry('charge', c[3], op .. fmt(seq), 'm', c[1], 'r', c[2], 'n', fmt(c[4]), 'l', op)
		use(c[5], c[3], c[4])
	end
	for i = 1, #refunds do
		local r = refunds[i]
		A.rf = A.rf + r[2]
		entry('refund', r[2], op .. fmt(r[1]), 'rs', 'refund_on', 'n', fmt(r[3]))
		use(r[4], -r[2], -r[3])
	end
	rec.tc, rec.tr = rec.tc + charge, rec.tr + refund
	local added, released, expires = 0, 0, 0
	if close == '1' then
		released = held
	elseif shrink > 0 then
		released = shrink
	elseif grow > 0 then
		added = math.min(grow, balance())
	end
	if released > 0 then
		A.hd, held = A.hd - released, held - released
		entry('release', released, op, 'rs', 'lease')
	end
	if added > 0 then
		A.hd, held = A.hd + added, held + added
		entry('hold', added, op, 'm', '', 'r', '', 'rs', 'lease')
	end
	if lapsed then
		-- Refunds to a closed or expired lease: it stays as it was.
		rec.q, rec.qc, rec.qf, rec.qa, rec.qr, rec.qh, rec.qb, rec.qe, rec.qd = seq, 0, refund, 0, 0, 0, balance(), 0, 0
		store(rec, nil)
		return reply(rec, false)
	end
	rec.z = nil
	if close == '1' then
		rec.s = 'c'
	elseif held == 0 then
		rec.z = 1
	end
	if held == 0 then
		redis.call('HDEL', KEYS[3], op)
		redis.call('ZREM', KEYS[4], op)
	else
		expires = NOW + ttl
		redis.call('HSET', KEYS[3], op, fmt(held))
		schedule(op, expires)
	end
	rec.q, rec.qc, rec.qf, rec.qa, rec.qr, rec.qh, rec.qb, rec.qe = seq, charge, refund, added, released, held, balance(), expires
	rec.qd = (A.dr > 0 and NOW - A.dr <= drain) and 1 or 0
	if rec.s == 'c' then
		store(rec, OPTTL)
	else
		store(rec, ttl + OPTTL)
	end
	return reply(rec, false)
end

return finish(run())
