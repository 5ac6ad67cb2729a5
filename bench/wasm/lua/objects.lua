-- Method calls through metatables, closures and varargs.
local Point = {}
Point.__index = Point
function Point.new(x, y) return setmetatable({x = x, y = y}, Point) end
function Point:add(o) return Point.new(self.x + o.x, self.y + o.y) end
function Point:norm1() return math.abs(self.x) + math.abs(self.y) end
local acc = Point.new(0, 0)
for i = 1, 1000000 do acc = acc:add(Point.new(i % 7 - 3, i % 5 - 2)) end
local function counter()
  local c = 0
  return function(...) c = c + select("#", ...) return c end
end
local f, total = counter(), 0
for i = 1, 1000000 do total = f(i, i, i) end
print(acc:norm1(), total)
