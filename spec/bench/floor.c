/*
** floor.c: the benchmark's floor.  The same requests the module makes,
** with libcurl and nothing else: no JSON, no Lua, the body is counted
** and dropped.
**
**   floor get N KEYS            N sequential GETs of the first PKey in
**                               KEYS, one reused easy handle
**   floor patch N KEYS          N sequential PATCHes {"ccpaOptOut":true}
**                               over the PKeys of KEYS, one reused handle
**   floor multi N KEYS CONC     the same N PATCHes, CONC in flight on one
**                               multi handle, CONC reused easy handles
**
** With FLOOR_MODULE_OPTIONS=1 in the environment, the floor sets the
** same libcurl options and headers as the module (timeouts, stall check,
** size cap, User-Agent, Accept, Accept-Encoding, a header callback): a
** diagnostic that splits the module's cost into libcurl's and its own.
**
** KEYS is a file of raw PKeys, one a line (percent-encoded here, before
** the clock starts).  The server and credentials come from the
** environment: CAMPAIGN_BASE_URL, CAMPAIGN_ORG, CAMPAIGN_API_KEY,
** CAMPAIGN_ACCESS_TOKEN.  Prints "N SECONDS" (the timed loop only, after
** one untimed call that opens the connection); exits 1 on any answer
** but 200.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>

static const char BODY[] = "{\"ccpaOptOut\":true}";

static char **urls;
static size_t nurls;
static struct curl_slist *headers;
static long failures;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "floor: %s\n", what);
  exit(2);
}

static const char *env(const char *name, const char *dflt) {
  const char *v = getenv(name);
  if (v != NULL && *v != '\0')
    return v;
  if (dflt == NULL) {
    fprintf(stderr, "floor: %s is not set\n", name);
    exit(2);
  }
  return dflt;
}

static size_t discard(char *data, size_t size, size_t n, void *ud) {
  (void)data;
  *(size_t *)ud += size * n;
  return size * n;
}

/* The URLs of every PKey in the file, built once. */
static void load_urls(const char *file, size_t max) {
  const char *base = env("CAMPAIGN_BASE_URL", NULL);
  const char *org = env("CAMPAIGN_ORG", "acme");
  char line[4096];
  size_t cap = 1024;
  FILE *f = fopen(file, "r");
  CURL *e = curl_easy_init();

  if (f == NULL)
    die("cannot read the keys file");
  urls = malloc(cap * sizeof *urls);
  while (nurls < max && fgets(line, sizeof line, f) != NULL) {
    size_t len = strcspn(line, "\r\n");
    char *esc, *url;
    if (len == 0)
      continue;
    esc = curl_easy_escape(e, line, (int)len);
    url = malloc(strlen(base) + strlen(org) + strlen(esc) + 64);
    sprintf(url, "%s/%s/campaign/profileAndServices/profile/%s", base, org,
            esc);
    curl_free(esc);
    if (nurls == cap)
      urls = realloc(urls, (cap *= 2) * sizeof *urls);
    urls[nurls++] = url;
  }
  fclose(f);
  curl_easy_cleanup(e);
  if (nurls == 0)
    die("no PKey in the keys file");
}

static int module_options;

static size_t header_line(char *data, size_t size, size_t n, void *ud) {
  (void)data;
  (void)ud;
  return size * n;
}

static void set_headers(void) {
  char line[4096];
  if (module_options) {
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "Expect:");
  }
  headers = curl_slist_append(headers, "Content-Type: application/json;charset=utf-8");
  headers = curl_slist_append(headers, "Cache-Control: no-cache");
  snprintf(line, sizeof line, "X-Api-Key: %s",
           env("CAMPAIGN_API_KEY", "sandbox-client"));
  headers = curl_slist_append(headers, line);
  snprintf(line, sizeof line, "Authorization: Bearer %s",
           env("CAMPAIGN_ACCESS_TOKEN", "sandbox-token"));
  headers = curl_slist_append(headers, line);
}

static CURL *new_handle(size_t *sink, int patch) {
  CURL *e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, sink);
  if (module_options) {
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)8 << 20);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "lua-campaign/0.1.0");
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_line);
  }
  if (patch) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PATCH");
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, BODY);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)(sizeof BODY - 1));
  }
  return e;
}

static void check(CURL *e, CURLcode rc) {
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (rc != CURLE_OK || status != 200)
    failures++;
}

static double sequential(long n, int patch) {
  size_t sink = 0;
  CURL *e = new_handle(&sink, patch);
  double t0;
  long i;

  curl_easy_setopt(e, CURLOPT_URL, urls[0]);
  check(e, curl_easy_perform(e));          /* opens the connection */
  t0 = now();
  for (i = 0; i < n; i++) {
    curl_easy_setopt(e, CURLOPT_URL, urls[patch ? (size_t)i % nurls : 0]);
    check(e, curl_easy_perform(e));
  }
  t0 = now() - t0;
  curl_easy_cleanup(e);
  return t0;
}

static double multi(long n, int conc) {
  CURLM *m = curl_multi_init();
  CURL **h = calloc((size_t)conc, sizeof *h);
  size_t sink = 0;
  long started = 0, done = 0;
  int running, i, left;
  double t0;
  CURLMsg *msg;

  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)conc);
  for (i = 0; i < conc; i++)
    h[i] = new_handle(&sink, 1);
  t0 = now();
  for (i = 0; i < conc && started < n; i++, started++) {
    curl_easy_setopt(h[i], CURLOPT_URL, urls[(size_t)started % nurls]);
    curl_multi_add_handle(m, h[i]);
  }
  while (done < n) {
    int added = 0;
    curl_multi_perform(m, &running);
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
      CURL *e;
      if (msg->msg != CURLMSG_DONE)
        continue;
      e = msg->easy_handle;
      check(e, msg->data.result);
      curl_multi_remove_handle(m, e);
      done++;
      if (started < n) {
        curl_easy_setopt(e, CURLOPT_URL, urls[(size_t)started++ % nurls]);
        curl_multi_add_handle(m, e);
        added = 1;
      }
    }
    /* a handle added again is sent by the next perform, not after a wait */
    if (done < n && !added)
      curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  t0 = now() - t0;
  for (i = 0; i < conc; i++)
    curl_easy_cleanup(h[i]);
  curl_multi_cleanup(m);
  free(h);
  return t0;
}

int main(int argc, char **argv) {
  long n;
  double secs;

  if (argc < 4)
    die("usage: floor get|patch|multi N KEYS [CONC]");
  n = atol(argv[2]);
  module_options = getenv("FLOOR_MODULE_OPTIONS") != NULL &&
                   strcmp(getenv("FLOOR_MODULE_OPTIONS"), "1") == 0;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  set_headers();
  if (strcmp(argv[1], "get") == 0) {
    load_urls(argv[3], 1);
    secs = sequential(n, 0);
  }
  else if (strcmp(argv[1], "patch") == 0) {
    load_urls(argv[3], (size_t)n);
    secs = sequential(n, 1);
  }
  else if (strcmp(argv[1], "multi") == 0 && argc > 4) {
    load_urls(argv[3], (size_t)n);
    secs = multi(n, atoi(argv[4]));
  }
  else
    die("usage: floor get|patch|multi N KEYS [CONC]");
  curl_slist_free_all(headers);
  curl_global_cleanup();
  if (failures > 0) {
    fprintf(stderr, "floor: %ld answers were not 200\n", failures);
    return 1;
  }
  printf("%ld %.6f\n", n, secs);
  return 0;
}
