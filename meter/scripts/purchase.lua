-- purchase.lua: records a purchase made through a checkout session, credits
-- it once paid, and takes back the share of its refunds and disputes.
--
-- KEYS[1..5] the account (lib.lua); KEYS[6] the purchase's record, kept for
-- the life of the account: b bundle, q quantity, t tokens, m total, c
-- credited (1 once), cr the credit's reply, tk tokens taken back, and r the
-- replies of its refunds by id.
-- ARGV[1..3] common (lib.lua); ARGV[4] step: "record", "fulfil" or "refund".
--   record: ARGV[5] bundle, ARGV[6] quantity, ARGV[7] tokens, ARGV[8] total.
--   fulfil: ARGV[5] the credit's id, ARGV[6] reason, ARGV[7] by.
--   refund: ARGV[5] the debit's id, ARGV[6] reason, ARGV[7] by, ARGV[8]
--   amount refunded, ARGV[9] its share of the tokens, or "" to ask for the
--   terms that the share is computed from.
--
-- Reply: record {'OK'}; fulfil and refund {'OK', amount, shortfall,
-- pending, balance, entry id, replayed}; a refund without its share
-- {'TERMS', tokens, total}; or an error reply (lib.lua).

-- MAXREFUNDS bounds the refunds of one purchase (MaxPurchaseRefunds).
local MAXREFUNDS = 100

local function run()
	local step = ARGV[4]
	if step ~= 'record' and step ~= 'fulfil' and step ~= 'refund' then
		return invalid('step must be record, fulfil or refund')
	end
	local err = begin()
	if err then
		return err
	end
	local rec = record()
	if step == 'record' then
		local q, t, m = int(ARGV[6]), int(ARGV[7]), int(ARGV[8])
		if not q or not t or not m or t < 1 or m < 1 then
			return invalid('quantity, tokens and total must be integers, tokens and total positive')
		end
		create()
		if rec then
			if rec.b ~= ARGV[5] or rec.q ~= q or rec.t ~= t or rec.m ~= m then
				return {'CONFLICT', 'the session was recorded with other values'}
			end
			return {'OK'}
		end
		store({b = ARGV[5], q = q, t = t, m = m, c = 0, tk = 0, n = 0, r = {}}, 0)
		return {'OK'}
	end
	if not rec then
		return {'NOTFOUND', 'no such purchase'}
	end
	if step == 'fulfil' then
		if rec.c == 1 then
			local r = rec.cr
			return {'OK', r[1], 0, 0, r[2], r[3], 1}
		end
		local amount, bal, eid = rec.t - rec.tk, balance(), ''
		if amount > 0 then
			if A.cr + amount > MAX or bal + A.hd + amount > MAX then
				return invalid('credited total or balance would exceed 2^53-1')
			end
			A.cr = A.cr + amount
			eid = entry('credit', amount, ARGV[5], 'rs', ARGV[6], 'by', ARGV[7])
		else
			amount = 0
		end
		rec.c, rec.cr = 1, {amount, balance(), eid}
		store(rec, 0)
		return {'OK', amount, 0, 0, balance(), eid, 0}
	end
	local id, amount = ARGV[5], int(ARGV[8])
	if not amount or amount < 1 then
		return invalid('amount must be an integer in [1, 2^53-1]')
	end
	local seen = rec.r[id]
	if seen then
		if seen[1] ~= amount then
			return {'CONFLICT', 'the refund was recorded with another amount'}
		end
		return {'OK', seen[2], seen[3], seen[4], seen[5], seen[6], 1}
	end
	if ARGV[9] == '' then
		return {'TERMS', rec.t, rec.m}
	end
	local share = int(ARGV[9])
	if not share then
		return invalid('share must be an integer in [0, 2^53-1]')
	end
	if rec.n >= MAXREFUNDS then
		return invalid('a purchase takes at most ' .. MAXREFUNDS .. ' refunds')
	end
	share = math.min(share, rec.t - rec.tk)
	rec.tk, rec.n = rec.tk + share, rec.n + 1
	local taken, shortfall, pending, eid = share, 0, 0, ''
	if rec.c ~= 1 then
		pending = 1
	else
		taken = math.min(share, balance())
		shortfall = share - taken
		if A.de + taken > MAX then
			return invalid('debited total would exceed 2^53-1')
		end
		if taken > 0 then
			A.de = A.de + taken
			if shortfall > 0 then
				eid = entry('debit', taken, id, 'rs', ARGV[6], 'by', ARGV[7], 'sf', fmt(shortfall))
			else
				eid = entry('debit', taken, id, 'rs', ARGV[6], 'by', ARGV[7])
			end
		end
	end
	rec.r[id] = {amount, taken, shortfall, pending, balance(), eid}
	store(rec, 0)
	return {'OK', taken, shortfall, pending, balance(), eid, 0}
end

return finish(run())
