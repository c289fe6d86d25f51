/*
** campaign.h: what the module's C files share.  Nothing here is
** exported from the shared object but luaopen_campaign.
*/
#ifndef CAMPAIGN_H
#define CAMPAIGN_H

#include <stddef.h>
#include <curl/curl.h>

#include "compat.h"

#define CAMPAIGN_VERSION "0.1.0"
#define CLIENT_MT "campaign.client"
#define ERROR_MT "campaign.error"

/* The HTTP methods the API uses. */
enum { M_GET, M_POST, M_PATCH, M_PUT, M_DELETE };

/* What a successful answer turns into for the caller. */
enum {
  SHAPE_ANY,      /* the decoded body; true when empty */
  SHAPE_OBJECT,   /* the decoded body, which must be an object */
  SHAPE_TRUE,     /* true; the body is not read */
  SHAPE_LIST,     /* the `content` array, all pages */
  SHAPE_COUNT,    /* the `count` field, an integer */
  SHAPE_FIELD,    /* one boolean field of a profile */
  SHAPE_PAGE      /* the whole list envelope: one page */
};

/* A received answer, or the failure to receive one. */
typedef struct Reply {
  CURLcode rc;
  long status;
  double retry_after;   /* seconds; negative when absent */
  int over;             /* the body passed the size cap */
  char *body;
  size_t len, size;
  size_t max;           /* the size cap */
  int sent;             /* the request left: a retry may repeat it */
} Reply;

/* A call in flight (or waiting to be tried again) on one easy handle. */
typedef struct Slot {
  CURL *easy;
  int state;            /* SLOT_* */
  int method, shape;
  const char *route;    /* a static name, for the hook */
  int tries;
  int renewed;          /* the token was renewed for this call */
  unsigned token_gen;   /* the client's token when the try started */
  double not_before;    /* monotonic seconds: when to try again */
  double started;
  double stall;         /* seconds an answer may stand still */
  double last_byte;     /* when the last byte came or went */
  curl_off_t seen;      /* bytes so far */
  int stalled;
  Reply reply;
} Slot;

enum { SLOT_FREE, SLOT_READY, SLOT_RUNNING, SLOT_DONE };

/* What a method's prepare step learns of the call. */
typedef struct Call {
  const char *name;     /* the method, for error messages */
  int arg;              /* stack index of its first argument */
  int method, shape;
  const char *route;
} Call;

typedef struct Client {
  int closed;
  CURLM *multi;
  struct curl_slist *headers;
  char *origin;         /* scheme://host[:port], for hrefs */
  char *base;           /* .../<org>/campaign/ */
  char *resource;       /* base + resource + "/profile" */
  char *field;          /* the opt-out field's name */
  char *org, *api_key, *token, *client_id, *secret, *scopes, *ims_url;
  char *old_token;      /* the one before: still live, still scrubbed */
  char *ca_file, *proxy;
  int renewable;        /* the token comes from client credentials */
  double token_expires; /* monotonic seconds */
  unsigned token_gen;   /* counts the tokens kept so far */
  long timeout_ms, connect_timeout_ms;
  double stall;
  size_t max_body;
  int retries;
  double max_wait, rate, next_send, paused_until;
  unsigned long rng;
  int in_bulk;
  int in_call;          /* a single call runs (run_guarded) */
  int has_hook;         /* on_request was given */
  int nslots;           /* slot 0 serves single calls; 1.. bulk */
  Slot *slots;
  Slot token_slot;      /* asks the token endpoint */
  struct curl_slist *form_headers;
} Client;

/* campaign.c */
Client *cmp_checkclient(lua_State *L, int idx);
int cmp_clean_string(const char *s, size_t len);
void cmp_free_secret(char **p);
void cmp_pushmodstate(lua_State *L, const char *name);
int cmp_quiet_call(lua_State *L, int nargs, int nres);

/* http.c */
double cmp_now(void);
void cmp_sleep(double seconds);
int cmp_slot_init(Client *c, Slot *s);
int cmp_grow_slots(Client *c, int n);
void cmp_slot_free(Client *c, Slot *s);
int cmp_slot_setup(Client *c, Slot *s, int method, const char *url,
                   const char *body, size_t len);
double cmp_start_ready(Client *c, int from, int to);
int cmp_start(Client *c, Slot *s, double now);
void cmp_step(Client *c, double max_wait);
void cmp_abort(Client *c, Slot *s);
int cmp_set_headers(Client *c);
void cmp_free_headers(struct curl_slist *h);
size_t cmp_on_header(char *line, size_t size, size_t n, void *ud);
void cmp_add_query(luaL_Buffer *b, const char *key, const char *value,
                   size_t len);
void cmp_add_escaped(luaL_Buffer *b, const char *s, size_t len);

/* reply.c */
int cmp_reply(lua_State *L, const Reply *r, int shape);
void cmp_pusherror(lua_State *L, const char *kind, long status,
                   const char *code, const char *message, int retryable);
int cmp_decode(lua_State *L, const char *s, size_t len);
void cmp_encode(lua_State *L, int idx, const char *what);
void cmp_scrub_err(lua_State *L, const Client *c, int idx);
void cmp_open_errors(lua_State *L);

/* calls.c */
void cmp_prepare(lua_State *L, Client *c, const char *name, int arg,
                 Slot *s);
int cmp_finish(lua_State *L, Client *c, Slot *s, int acc);
int cmp_next_href(lua_State *L, Client *c, int page);
int cmp_retry(lua_State *L, Client *c, Slot *s);
double cmp_backoff(Client *c, int tries);
int cmp_hook(lua_State *L, int client_idx, const Slot *s);
void cmp_wait_slot(Client *c, Slot *s, int idx);
int cmp_busy(const Client *c);
void cmp_client_methods(lua_State *L);

/* token.c */
int cmp_token(lua_State *L, Client *c, int client_idx);

/* bulk.c */
int cmp_bulk(lua_State *L);

#endif
