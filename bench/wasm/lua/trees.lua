-- Allocation and garbage collection: binary trees.
local function make(d)
  if d == 0 then return {} end
  return {make(d - 1), make(d - 1)}
end
local function check(t)
  if not t[1] then return 1 end
  return 1 + check(t[1]) + check(t[2])
end
local total = 0
for d = 4, 16, 2 do
  for _ = 1, 2 ^ (16 - d) do total = total + check(make(d)) end
end
print(total)
