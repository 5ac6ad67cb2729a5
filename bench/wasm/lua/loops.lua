-- Local-heavy numeric loops: a Mandelbrot set in floats, a checksum in integers.
local w, h, iters, inside = 400, 300, 80, 0
for y = 0, h - 1 do
  local ci = 2.0 * y / h - 1.0
  for x = 0, w - 1 do
    local cr, zr, zi, i = 2.5 * x / w - 2.0, 0.0, 0.0, 0
    while i < iters and zr * zr + zi * zi <= 4.0 do
      zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
      i = i + 1
    end
    if i == iters then inside = inside + 1 end
  end
end
local sum = 0
for i = 1, 10000000 do sum = (sum + i * 7) % 1000003 end
print(inside, sum)
