-- usage.lua: reads an account's usage buckets of one period, as account.lua
-- reads the account.
--
-- KEYS[1..5] the account (lib.lua).
-- ARGV[1..3] common (lib.lua); ARGV[4] mode, "caller" or "operator";
-- ARGV[5] sign-up bonus; ARGV[6] the period, "h" or "d".
--
-- Reply: {'OK', now, buckets}, Redis's clock in ms and each bucket of the
-- period as {index, {line, charged, requests, ...}}, or an error reply
-- (lib.lua).

local function run()
	local period = ARGV[6]
	if period ~= 'h' and period ~= 'd' then
		return invalid('period must be h or d')
	end
	local err = open(ARGV[4], int(ARGV[5]))
	if err then
		return err
	end
	local all, out = redis.call('HGETALL', KEYS[5]), {}
	for i = 1, #all, 2 do
		if string.sub(all[i], 1, 1) == period then
			local lines = {}
			for line, c in pairs(cmsgpack.unpack(all[i + 1])) do
				lines[#lines + 1] = line
				lines[#lines + 1] = c[1]
				lines[#lines + 1] = c[2]
			end
			out[#out + 1] = {tonumber(string.sub(all[i], 2)), lines}
		end
	end
	return {'OK', NOW, out}
end

return finish(run())
