-- One request script for every endpoint of the HTTP benchmark (bench/wrk.py).
-- wrk ... -s request.lua URL -- METHOD PATH BODY IDS_FILE [ORDER]
--   PATH and BODY may hold {id} (an id from IDS_FILE, one per line: a random one, or
--   with ORDER "sequential:THREADS" each in turn, as a warm-up that touches them all)
--   and {n} (a number unique to the request: bodies that must differ from one another).
local counter = 0
thread_number = 0 -- a global: `setup` sets each thread's own (thread:set)
local method, path, body, ids = "GET", "/", "", {}
local threads = 0 -- sequential order over this many threads; 0: random ids
local headers = {}

function setup(thread)
  thread_number = thread_number + 1
  thread:set("thread_number", thread_number)
end

function init(args)
  method, path, body = args[1] or "GET", args[2] or "/", args[3] or ""
  if args[4] and args[4] ~= "" then
    for line in io.lines(args[4]) do
      if line ~= "" then ids[#ids + 1] = line end
    end
  end
  for name, value in pairs(wrk.headers) do headers[name] = value end -- wrk's -H ones
  if body ~= "" then headers["Content-Type"] = "application/json" end
  local order = args[5] or ""
  if order:sub(1, 11) == "sequential:" then threads = tonumber(order:sub(12)) end
  math.randomseed(os.time() + (thread_number or 0) * 7919)
end

local function filled(text, id, n)
  return (text:gsub("{id}", id):gsub("{n}", tostring(n)))
end

function request()
  counter = counter + 1
  local n = (thread_number or 0) * 1000000000 + counter
  local id = ""
  if #ids > 0 and threads > 0 then
    id = ids[((counter - 1) * threads + (thread_number or 1) - 1) % #ids + 1]
  elseif #ids > 0 then
    id = ids[math.random(#ids)]
  end
  local chosen = filled(path, id, n)
  if body == "" then
    return wrk.format(method, chosen, headers)
  end
  return wrk.format(method, chosen, headers, filled(body, id, n))
end
