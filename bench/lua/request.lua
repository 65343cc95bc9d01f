-- One request script for every endpoint of the HTTP benchmark (bench/wrk.py).
-- wrk ... -s request.lua URL -- METHOD PATH BODY IDS_FILE
--   PATH and BODY may hold {id} (a random id from IDS_FILE, one per line) and {n}
--   (a number unique to the request: bodies that must differ from one another).
local counter = 0
local thread_number = 0
local method, path, body, ids = "GET", "/", "", {}
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
  math.randomseed(os.time() + (thread_number or 0) * 7919)
end

local function filled(text, id, n)
  return (text:gsub("{id}", id):gsub("{n}", tostring(n)))
end

function request()
  counter = counter + 1
  local n = (thread_number or 0) * 1000000000 + counter
  local id = #ids > 0 and ids[math.random(#ids)] or ""
  local chosen = filled(path, id, n)
  if body == "" then
    return wrk.format(method, chosen, headers)
  end
  return wrk.format(method, chosen, headers, filled(body, id, n))
end
