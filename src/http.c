/*
** http.c: the transport.  Every call, single or bulk, is a slot with an
** easy handle driven by the client's one multi handle, so connections
** are shared and reused across all of them.  No Lua is called from
** here: a callback only records what arrived.
*/
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <math.h>
#include <time.h>
#include <errno.h>

#include "campaign.h"

double cmp_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void cmp_sleep(double seconds) {
  struct timespec ts;
  if (seconds <= 0)
    return;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/*
** The body is kept up to the size cap and no further: past it the
** transfer is ended (a zero return makes libcurl stop with an error).
*/
static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  Reply *r = ud;
  size_t len = size * n;

  if (r->len + len > r->max) {
    r->over = 1;
    return 0;
  }
  if (r->len + len + 1 > r->size) {
    size_t want = r->size ? r->size : 4096;
    char *p;
    while (want < r->len + len + 1)
      want *= 2;
    p = realloc(r->body, want);
    if (p == NULL)
      return 0;
    r->body = p;
    r->size = want;
  }
  memcpy(r->body + r->len, data, len);
  r->len += len;
  r->body[r->len] = '\0';
  return len;
}

/* Retry-After: either delay-seconds or an HTTP date. */
static double parse_retry_after(const char *v, size_t len) {
  char text[64];
  char *end;
  double secs;

  while (len > 0 && (*v == ' ' || *v == '\t'))
    v++, len--;
  while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' ||
                     v[len - 1] == ' '))
    len--;
  if (len == 0 || len >= sizeof text)
    return -1;
  memcpy(text, v, len);
  text[len] = '\0';

  /* delay-seconds: digits (a fraction tolerated); no sign, exponent,
  ** hex, "inf" or "nan", which strtod alone would take */
  if (strspn(text, "0123456789.") == len) {
    secs = strtod(text, &end);
    return end != text && *end == '\0' && isfinite(secs) ? secs : -1;
  }
  else {
    time_t when = curl_getdate(text, NULL);
    if (when == -1)
      return -1;
    secs = difftime(when, time(NULL));
    return secs < 0 ? 0 : secs;
  }
}

/* libcurl's header callback; ud is the slot's Reply (also fuzzed) */
size_t cmp_on_header(char *line, size_t size, size_t n, void *ud) {
  Reply *r = ud;
  size_t len = size * n;
  static const char name[] = "retry-after:";

  /* a new status line: an interim or redirect answer's headers end */
  if (len > 5 && memcmp(line, "HTTP/", 5) == 0)
    r->retry_after = -1;
  else if (len > sizeof name - 1 &&
           strncasecmp(line, name, sizeof name - 1) == 0)
    r->retry_after = parse_retry_after(line + sizeof name - 1,
                                       len - (sizeof name - 1));
  return len;
}

/*
** Ends a transfer whose answer has stalled for the client's
** stall_timeout.  libcurl's own low-speed limit averages over several
** seconds, so a stall would be noticed up to five seconds late.
*/
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow) {
  Slot *s = ud;
  double now = cmp_now();
  (void)dltotal, (void)ultotal;

  if (dlnow + ulnow != s->seen) {
    s->seen = dlnow + ulnow;
    s->last_byte = now;
    return 0;
  }
  if (now - s->last_byte > s->stall) {
    s->stalled = 1;
    return 1;
  }
  return 0;
}

/* Options that hold for every call a client makes. */
static int set_constant_options(Client *c, Slot *s) {
  CURL *e = s->easy;
  CURLcode rc = CURLE_OK;

#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val)
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
  SET(CURLOPT_TIMEOUT_MS, c->timeout_ms);
  SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
  SET(CURLOPT_NOPROGRESS, 0L);
  SET(CURLOPT_XFERINFOFUNCTION, on_progress);
  SET(CURLOPT_XFERINFODATA, s);
  SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_body);
  SET(CURLOPT_ACCEPT_ENCODING, "");
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_HTTPHEADER, c->headers);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, &s->reply);
  SET(CURLOPT_HEADERFUNCTION, cmp_on_header);
  SET(CURLOPT_HEADERDATA, &s->reply);
  SET(CURLOPT_PRIVATE, s);
  if (c->ca_file)
    SET(CURLOPT_CAINFO, c->ca_file);
  /* only the proxy the caller names: libcurl would otherwise take one
  ** from http_proxy and the like, and the token could go through it in
  ** clear */
  SET(CURLOPT_PROXY, c->proxy ? c->proxy : "");
#undef SET
  return rc == CURLE_OK;
}

int cmp_slot_init(Client *c, Slot *s) {
  memset(s, 0, sizeof *s);
  s->stall = c->stall;
  s->reply.retry_after = -1;
  s->reply.max = c->max_body;
  s->easy = curl_easy_init();
  if (s->easy != NULL && !set_constant_options(c, s)) {
    curl_easy_cleanup(s->easy);
    s->easy = NULL;
  }
  return s->easy != NULL;
}

/*
** Makes room for n slots.  Only between calls: the slots may move, and
** libcurl keeps pointers into them, which are set again here.
*/
int cmp_grow_slots(Client *c, int n) {
  Slot *p;
  int i;

  if (n <= c->nslots)
    return 1;
  p = realloc(c->slots, n * sizeof *p);
  if (p == NULL)
    return 0;
  c->slots = p;
  for (i = 0; i < c->nslots; i++) {
    Slot *s = &p[i];
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
    curl_easy_setopt(s->easy, CURLOPT_XFERINFODATA, s);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, &s->reply);
    curl_easy_setopt(s->easy, CURLOPT_HEADERDATA, &s->reply);
  }
  for (; c->nslots < n; c->nslots++)
    if (!cmp_slot_init(c, &p[c->nslots]))
      return 0;
  return 1;
}

void cmp_slot_free(Client *c, Slot *s) {
  if (s->easy) {
    if (s->state == SLOT_RUNNING)
      curl_multi_remove_handle(c->multi, s->easy);
    curl_easy_cleanup(s->easy);
    s->easy = NULL;
  }
  free(s->reply.body);
  s->reply.body = NULL;
  s->state = SLOT_FREE;
}

/* Points a slot at a new request; the body is copied by libcurl. */
int cmp_slot_setup(Client *c, Slot *s, int method, const char *url,
                   const char *body, size_t len) {
  static const char *const verbs[] = {
    "GET", "POST", "PATCH", "PUT", "DELETE"
  };
  CURL *e = s->easy;
  CURLcode rc;
  (void)c;

  rc = curl_easy_setopt(e, CURLOPT_URL, url);
  if (rc == CURLE_OK && body != NULL) {
    rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    if (rc == CURLE_OK)
      rc = curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
  }
  else if (rc == CURLE_OK)
    rc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  /* a body makes libcurl POST: any other verb, GET too, is named */
  if (rc == CURLE_OK)
    rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
                          method == M_GET && body == NULL ? NULL
                                                          : verbs[method]);
  if (rc != CURLE_OK)
    return 0;   /* the slot stays free */
  s->method = method;
  s->tries = 0;
  s->renewed = 0;
  s->not_before = 0;
  s->state = SLOT_READY;
  return 1;
}

static void reply_reset(Reply *r) {
  r->rc = CURLE_OK;
  r->status = 0;
  r->retry_after = -1;
  r->over = 0;
  r->sent = 0;
  r->len = 0;
}

/*
** When the client may send next: not while a Retry-After pauses it,
** and no faster than its rate limit.  Returns 0 when it may send now.
*/
static double send_delay(Client *c, double now) {
  double at = c->paused_until;
  if (c->rate > 0 && c->next_send > at)
    at = c->next_send;
  return at > now ? at - now : 0;
}

/* Strict spacing, no burst: each send books the next 1/rate seconds. */
static void take_send_slot(Client *c, double now) {
  if (c->rate > 0)
    c->next_send = (c->next_send > now ? c->next_send : now) + 1 / c->rate;
}

/*
** Starts the ready slots in [from, to) that are due.  Returns how long
** to wait before one of those left could start (a large number when
** none is waiting).
*/
double cmp_start_ready(Client *c, int from, int to) {
  double now = cmp_now();
  double wait = 3600;
  int i;

  for (i = from; i < to; i++) {
    Slot *s = &c->slots[i];
    double d;
    if (s->state != SLOT_READY)
      continue;
    d = s->not_before - now;
    if (d <= 0)
      d = send_delay(c, now);
    if (d > 0) {
      if (d < wait)
        wait = d;
      continue;
    }
    take_send_slot(c, now);
    cmp_start(c, s, now);
  }
  return wait;
}

/* Hands one slot to the multi handle now. */
int cmp_start(Client *c, Slot *s, double now) {
  reply_reset(&s->reply);
  s->tries++;
  s->token_gen = c->token_gen;
  s->started = now;
  s->last_byte = now;
  s->seen = 0;
  s->stalled = 0;
  if (curl_multi_add_handle(c->multi, s->easy) != CURLM_OK) {
    s->reply.rc = CURLE_OUT_OF_MEMORY;
    s->state = SLOT_DONE;
    return 0;
  }
  s->state = SLOT_RUNNING;
  return 1;
}

/* Moves every finished transfer's slot to SLOT_DONE; counts them. */
static int collect(Client *c) {
  CURLMsg *msg;
  int left, done = 0;

  while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
    Slot *s = NULL;
    if (msg->msg != CURLMSG_DONE)
      continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    s->reply.rc = msg->data.result;
    if (s->stalled && s->reply.rc == CURLE_ABORTED_BY_CALLBACK)
      s->reply.rc = CURLE_OPERATION_TIMEDOUT;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->reply.status);
    {
      long size = 0;
      curl_easy_getinfo(s->easy, CURLINFO_REQUEST_SIZE, &size);
      s->reply.sent = size > 0 && s->reply.rc != CURLE_COULDNT_CONNECT;
    }
    curl_multi_remove_handle(c->multi, s->easy);
    s->state = SLOT_DONE;
    done++;
  }
  return done;
}

/*
** Moves the transfers on, waiting at most max_wait seconds for news.
** A transfer that ended within the first perform must not be followed
** by a wait: on loopback that is most of them, and the wait would run
** to curl's next timer.
*/
void cmp_step(Client *c, double max_wait) {
  int running = 0;
  int ms = (int)(max_wait * 1000 + 0.999);

  curl_multi_perform(c->multi, &running);
  if (collect(c) > 0 || ms <= 0)
    return;
  if (running > 0)
    curl_multi_poll(c->multi, NULL, 0, ms > 1000 ? 1000 : ms, NULL);
  else
    cmp_sleep(max_wait > 1 ? 1 : max_wait);
  curl_multi_perform(c->multi, &running);
  collect(c);
}

void cmp_abort(Client *c, Slot *s) {
  if (s->state == SLOT_RUNNING)
    curl_multi_remove_handle(c->multi, s->easy);
  s->state = SLOT_FREE;
}

/* The header list every call sends; rebuilt when the token changes. */
int cmp_set_headers(Client *c) {
  struct curl_slist *h = NULL, *t;
  /* the User-Agent here rather than CURLOPT_USERAGENT, which libcurl
  ** formats anew on every request */
  const char *fixed[] = {
    "User-Agent: lua-campaign/" CAMPAIGN_VERSION,
    "Accept: application/json",
    "Content-Type: application/json;charset=utf-8",
    "Cache-Control: no-cache",
    "Expect:",
    NULL
  };
  char line[8192];
  int i;

  for (i = 0; fixed[i] != NULL; i++) {
    if ((t = curl_slist_append(h, fixed[i])) == NULL)
      goto fail;
    h = t;
  }
  snprintf(line, sizeof line, "X-Api-Key: %s", c->api_key);
  if ((t = curl_slist_append(h, line)) == NULL)
    goto fail;
  h = t;
  if (c->token != NULL) {
    snprintf(line, sizeof line, "Authorization: Bearer %s", c->token);
    if ((t = curl_slist_append(h, line)) == NULL)
      goto fail;
    h = t;
  }
  memset(line, 0, sizeof line);

  /* every slot points at the list: swap it everywhere, then free */
  for (i = 0; i < c->nslots; i++)
    if (c->slots[i].easy)
      curl_easy_setopt(c->slots[i].easy, CURLOPT_HTTPHEADER, h);
  cmp_free_headers(c->headers);
  c->headers = h;
  return 1;

fail:
  memset(line, 0, sizeof line);
  cmp_free_headers(h);
  return 0;
}

/* Frees a header list, its lines wiped first: they hold secrets. */
void cmp_free_headers(struct curl_slist *h) {
  struct curl_slist *p;

  for (p = h; p != NULL; p = p->next)
    memset(p->data, 0, strlen(p->data));
  curl_slist_free_all(h);
}

/* Percent-encodes all but RFC 3986's unreserved characters. */
void cmp_add_escaped(luaL_Buffer *b, const char *s, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i;

  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
        (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
        ch == '_' || ch == '~')
      luaL_addchar(b, (char)ch);
    else {
      luaL_addchar(b, '%');
      luaL_addchar(b, hex[ch >> 4]);
      luaL_addchar(b, hex[ch & 15]);
    }
  }
}

/* Adds "?key=value" or "&key=value" to a URL being built. */
void cmp_add_query(luaL_Buffer *b, const char *key, const char *value,
                   size_t len) {
  luaL_addstring(b, key);
  luaL_addchar(b, '=');
  cmp_add_escaped(b, value, len);
}
