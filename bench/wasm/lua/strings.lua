-- Strings: building, formatting, pattern matching.
local parts = {}
for i = 1, 150000 do parts[#parts + 1] = string.format("%05d:%s", i, tostring(i * 3)) end
local s = table.concat(parts, ",")
local n = 0
for a, b in s:gmatch("(%d+):(%d+)") do n = n + (tonumber(b) - tonumber(a) * 3) + 1 end
local r = s:gsub("0", "o"):upper():sub(1, 40)
local words = 0
for _ in ("the quick brown fox jumps over the lazy dog "):rep(25000):gmatch("%a+") do
  words = words + 1
end
print(#s, n, r, words)
