/*
** threads.c: independent Lua states in several threads of one process,
** each loading the module and making calls against the sandbox (single
** calls, a bulk run, failures), at the same time.  Run under helgrind by
** `make check-threads` (spec/threads/run.sh), which fails on any report
** that points into the module's own code.
**
**   threads [N]   with CAMPAIGN_BASE_URL etc. set (with-sandbox.sh)
**
** Exits 0 when every thread's script ran to its end.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static const char script[] =
  "local id = ...\n"
  "package.cpath = (os.getenv('CAMPAIGN_CPATH') or 'build/lua5.4/?.so;')"
  "  .. package.cpath\n"
  "local campaign = require 'campaign'\n"
  "local base = assert(os.getenv('CAMPAIGN_BASE_URL'))\n"
  "local function new(extra)\n"
  "  local o = { org = os.getenv('CAMPAIGN_ORG') or 'acme',\n"
  "    api_key = os.getenv('CAMPAIGN_API_KEY'),\n"
  "    access_token = os.getenv('CAMPAIGN_ACCESS_TOKEN'),\n"
  "    base_url = base, retries = 1, max_retry_wait = 0.05 }\n"
  "  for k, v in pairs(extra or {}) do o[k] = v or nil end\n"
  "  return campaign.new(o)\n"
  "end\n"
  "local a, b = new(), new()\n"
  "local page = assert(a:request('GET', 'profileAndServices/profile?_lineCount=5'))\n"
  "local pkeys = {}\n"
  "for i, p in ipairs(page.content) do pkeys[i] = p.PKey end\n"
  "for round = 1, 3 do\n"
  "  for _, k in ipairs(pkeys) do\n"
  "    assert(a:get_profile(k).PKey == k)\n"
  "    assert(type(b:get_ccpa_optout(k)) == 'boolean')\n"
  "  end\n"
  "  assert(b:count_profiles() > 0)\n"
  "  local _, err = a:get_profile('@no-such-' .. id)\n"
  "  assert(err and err.status == 404, tostring(err))\n"
  "end\n"
  "local ops = {}\n"
  "for i = 1, 20 do ops[i] = { 'get_profile', pkeys[i % #pkeys + 1] } end\n"
  "local s = b:bulk(ops, { concurrency = 4 })\n"
  "assert(s.ok == 20, 'bulk: ' .. s.ok)\n"
  "local c = new { base_url = 'http://127.0.0.1:9', retries = 0 }\n"
  "local _, err = c:get_profile('@x')\n"
  "assert(err.kind == 'network')\n"
  "c:close(); a:close()\n"
  "b = nil; collectgarbage()\n"
  "local t = new { access_token = false, client_id = os.getenv('CAMPAIGN_API_KEY'),\n"
  "  client_secret = os.getenv('CAMPAIGN_CLIENT_SECRET'), ims_url = base }\n"
  "assert(t:count_profiles() > 0)\n"
  "t:close()\n"
  "return 'ok'\n";

typedef struct Job {
  int id;
  int ok;
  char message[512];
} Job;

static void *run(void *ud) {
  Job *j = ud;
  lua_State *L = luaL_newstate();

  luaL_openlibs(L);
  if (luaL_loadbuffer(L, script, sizeof script - 1, "=thread") != LUA_OK ||
      (lua_pushinteger(L, j->id), lua_pcall(L, 1, 1, 0)) != LUA_OK) {
    snprintf(j->message, sizeof j->message, "%s", lua_tostring(L, -1));
    j->ok = 0;
  }
  else
    j->ok = 1;
  lua_close(L);
  return NULL;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 4, i, failed = 0;
  pthread_t *t;
  Job *jobs;

  if (n < 1 || n > 64)
    n = 4;
  t = calloc((size_t)n, sizeof *t);
  jobs = calloc((size_t)n, sizeof *jobs);
  if (t == NULL || jobs == NULL)
    return 2;
  for (i = 0; i < n; i++) {
    jobs[i].id = i + 1;
    if (pthread_create(&t[i], NULL, run, &jobs[i]) != 0)
      return 2;
  }
  for (i = 0; i < n; i++) {
    pthread_join(t[i], NULL);
    if (!jobs[i].ok) {
      fprintf(stderr, "thread %d: %s\n", jobs[i].id, jobs[i].message);
      failed++;
    }
  }
  printf("%d threads, %d failed\n", n, failed);
  free(t);
  free(jobs);
  return failed ? 1 : 0;
}
