-- Arrays and hash tables: a sieve, insertion, sorting, hash lookups.
local n, flags, count = 2000000, {}, 0
for i = 2, n do flags[i] = true end
for i = 2, n do
  if flags[i] then
    count = count + 1
    for k = i * i, n, i do flags[k] = false end
  end
end
local t = {}
for i = 1, 300000 do t[#t + 1] = (i * 7919) % 300007 end
table.sort(t)
local h = {}
for i = 1, 300000 do h["k" .. (i % 5000)] = (h["k" .. (i % 5000)] or 0) + i end
print(count, t[1], t[#t], h.k42)
