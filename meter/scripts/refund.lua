-- refund.lua: gives back amount of what an op charged (a charge, or a
-- settled hold), once per op.
--
-- KEYS[1..5] the account (lib.lua); KEYS[6] the op record.
-- ARGV[1..3] common (lib.lua); ARGV[4] op; ARGV[5] amount; ARGV[6] reason,
-- "refund_on" or "not_forwarded".
--
-- Reply: {'OK', refunded, 0, balance, 0, 0, replayed}, or an error reply
-- (lib.lua). Repeating a refund with the same values replies with its first
-- result; with other values it is a conflict.

local function run()
	local op, amount, reason = ARGV[4], int(ARGV[5]), ARGV[6]
	if not amount or amount < 1 then
		return invalid('amount must be an integer in [1, 2^53-1]')
	end
	if reason ~= 'refund_on' and reason ~= 'not_forwarded' then
		return invalid('reason must be refund_on or not_forwarded')
	end
	local err = begin()
	if err then
		return err
	end
	local rec
	rec, err = oprecord(nil, true)
	if err then
		return err
	end
	if rec.fa then
		if rec.fa ~= amount or rec.fr ~= reason then
			return {'CONFLICT', 'the op was refunded with other values'}
		end
		return receipt(amount, 0, rec.fb, 0, 0, true)
	end
	local charged
	if rec.k == 'c' then
		charged = rec.a
	elseif rec.s == 's' then
		charged = rec.sa
	else
		return invalid('op has charged nothing')
	end
	if amount > charged then
		return invalid('refund amount exceeds what the op charged')
	end
	if A.rf + amount > MAX then
		return invalid('refunded total would exceed 2^53-1')
	end
	A.rf = A.rf + amount
	entry('refund', amount, op, 'rs', reason)
	use(rec.u or '', -amount, amount == charged and -1 or 0)
	rec.fa, rec.fr, rec.fb = amount, reason, balance()
	store(rec, nil)
	return receipt(amount, 0, balance(), 0, 0, false)
end

return finish(run())
