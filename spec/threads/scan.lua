-- Reads a helgrind log (spec/threads/run.sh) and fails when a report
-- points into the module's own code: an access ("at" frame) in one of
-- src/*.c.  Reports whose frames are all in Lua, libcurl, OpenSSL or
-- lua-cjson are counted and listed by library, not failed.
--
-- One kind of report is told apart: a value written inside a
-- pthread_once initialiser and read after pthread_once in another
-- thread.  POSIX orders the two, but helgrind does not see glibc's
-- pthread_once synchronise (it is a known blind spot of the tool), so
-- these are listed as such; ThreadSanitizer, which understands
-- pthread_once, checks the same program in spec/threads/run.sh.
local log = assert(arg[1], "usage: scan.lua HELGRIND_LOG")
local MODULE = { "campaign.c", "calls.c", "http.c", "reply.c", "token.c", "bulk.c" }

local function module_frame(line)
  if line:find("campaign.so", 1, true) then return true end
  for _, f in ipairs(MODULE) do
    if line:find("%(" .. f:gsub("%.", "%%.") .. ":%d+%)") then return true end
  end
  return false
end

local reports, block = {}, nil
for line in io.lines(log) do
  local body = line:gsub("^==%d+== ?", "")
  if body:match("^Possible data race") or body:match("^Lock at ")
      or body:match("^Thread #%d+ unlocked") or body:match("^Thread #%d+'s call to")
      or body:match("^Thread #%d+: ") then
    block = { head = body, lines = {} }
    reports[#reports + 1] = block
  elseif body:match("^%-%-%-Thread%-Announcement") then
    block = nil
  elseif block then
    block.lines[#block.lines + 1] = body
  end
end

local bad, once, third = {}, 0, {}
for _, r in ipairs(reports) do
  local mod, in_once = false, false
  for _, l in ipairs(r.lines) do
    if l:match("^%s+at 0x") and module_frame(l) then mod = true end
    if l:find("__pthread_once_slow", 1, true) then in_once = true end
  end
  if mod and in_once then
    once = once + 1
  elseif mod then
    bad[#bad + 1] = r
  else
    local lib = "other"
    for _, l in ipairs(r.lines) do
      local m = l:match("^%s+at 0x%x+: .-%(in [^)]-/([^/)]+)%)")
      if m then lib = m break end
    end
    third[lib] = (third[lib] or 0) + 1
  end
end

print(("helgrind: %d reports; %d in the module's code, %d pthread_once "
  .. "(tool blind spot), third-party:"):format(#reports, #bad, once))
for lib, n in pairs(third) do print(("  %5d  %s"):format(n, lib)) end
for _, r in ipairs(bad) do
  print("\n" .. r.head)
  for _, l in ipairs(r.lines) do print(l) end
end
os.exit(#bad == 0 and 0 or 1)
