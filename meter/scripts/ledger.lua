-- ledger.lua: reads a page of an account's ledger, newest first, as
-- account.lua reads the account.
--
-- KEYS[1..5] the account (lib.lua).
-- ARGV[1..3] common (lib.lua); ARGV[4] mode, "caller" or "operator";
-- ARGV[5] sign-up bonus; ARGV[6] the entry id to read before (exclusive), or
-- "" for the newest; ARGV[7] how many entries to read.
--
-- Reply: {'OK', entries}, entries as XREVRANGE gives them, or an error reply
-- (lib.lua).

local function run()
	local before, limit = ARGV[6], int(ARGV[7])
	if before ~= '' and not string.find(before, '^%d%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%-%d%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$') then
		return invalid('before must be a ledger entry id')
	end
	if not limit or limit < 1 or limit > 1001 then
		return invalid('limit must be 1-1001')
	end
	local err = open(ARGV[4], int(ARGV[5]))
	if err then
		return err
	end
	local start = '+'
	if string.find(before, '^0+%-0+$') then
		return {'OK', {}}
	elseif before ~= '' then
		start = '(' .. before
	end
	return {'OK', redis.call('XREVRANGE', KEYS[2], start, '-', 'COUNT', fmt(limit))}
end

return finish(run())
