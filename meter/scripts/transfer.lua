-- transfer.lua: an operator's credit or debit, under the operator's own id.
-- The same id with the same amount and reason replies with the first result;
-- with another amount or reason it is a conflict, and a repeat rewrites the
-- record as it is, so that WAIT after it waits for the first write too. Ids are kept for the life
-- of the account. A debit never takes the balance below 0.
--
-- KEYS[1..5] the account (lib.lua); KEYS[6] the id's record.
-- ARGV[1..3] common (lib.lua); ARGV[4] kind, "credit" or "debit"; ARGV[5] id;
-- ARGV[6] amount; ARGV[7] reason; ARGV[8] by.
--
-- Reply: {'OK', balance, entry id, replayed, by}, or an error reply
-- (lib.lua).

local function run()
	local kind, id, amount, reason, by = ARGV[4], ARGV[5], int(ARGV[6]), ARGV[7], ARGV[8]
	if kind ~= 'credit' and kind ~= 'debit' then
		return invalid('kind must be credit or debit')
	end
	if not amount or amount < 1 then
		return invalid('amount must be an integer in [1, 2^53-1]')
	end
	local err = begin()
	if err then
		return err
	end
	create()
	local rec = record()
	if rec then
		if rec.a ~= amount or rec.r ~= reason then
			return {'CONFLICT', 'the id was used with another amount or reason'}
		end
		-- Writing the record again, unchanged, makes a WAIT that follows
		-- this script cover the first write too.
		store(rec, 0)
		return {'OK', rec.b, rec.e, 1, rec.by}
	end
	local bal = balance()
	if kind == 'debit' then
		if bal < amount then
			return {'INSUFFICIENT', bal, amount, A.hd}
		end
		if A.de + amount > MAX then
			return invalid('debited total would exceed 2^53-1')
		end
		A.de = A.de + amount
	else
		if A.cr + amount > MAX or bal + A.hd + amount > MAX then
			return invalid('credited total or balance would exceed 2^53-1')
		end
		A.cr = A.cr + amount
	end
	local eid = entry(kind, amount, id, 'rs', reason, 'by', by)
	store({a = amount, r = reason, b = balance(), e = eid, by = by}, 0)
	return {'OK', balance(), eid, 0, by}
end

return finish(run())
