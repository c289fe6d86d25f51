/*
** token.c: access tokens from client credentials (OAuth
** server-to-server).  The client asks the token endpoint for a token
** before its first call, again a few minutes before the token expires,
** and at once when the API answers 401013.
*/
#include <stdlib.h>
#include <string.h>

#include "campaign.h"

/* Key in the client's uservalue table of a refusal, kept for good. */
#define REFUSAL "auth_refused"

/* The form body; malloc'd, as it holds the client secret. */
static char *token_form(Client *c) {
  char *id = curl_easy_escape(NULL, c->client_id, 0);
  char *secret = curl_easy_escape(NULL, c->secret, 0);
  char *scope = curl_easy_escape(NULL, c->scopes, 0);
  char *form = NULL;

  if (id && secret && scope) {
    size_t n = strlen(id) + strlen(secret) + strlen(scope) + 80;
    form = malloc(n);
    if (form)
      snprintf(form, n, "grant_type=client_credentials&client_id=%s"
               "&client_secret=%s&scope=%s", id, secret, scope);
  }
  if (secret)
    memset(secret, 0, strlen(secret));
  curl_free(id), curl_free(secret), curl_free(scope);
  return form;
}

/*
** Sends the form and waits for the answer on the token slot.  libcurl
** reads the form from our buffer rather than a copy of its own, which
** it would free without wiping: the form holds the client secret.
*/
static int ask(Client *c) {
  Slot *s = &c->token_slot;
  char *form = token_form(c);
  size_t len;
  int ok;

  if (form == NULL)
    return 0;
  len = strlen(form);
  ok = cmp_slot_setup(c, s, M_POST, c->ims_url, "", 0) &&
       curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                        (curl_off_t)len) == CURLE_OK &&
       curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, form) == CURLE_OK;
  if (ok) {
    s->route = "ims/token";
    cmp_start(c, s, cmp_now());
    while (s->state != SLOT_DONE)
      cmp_step(c, 1);
    s->state = SLOT_FREE;
  }
  curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, "");
  memset(form, 0, len);
  free(form);
  return ok;
}

/* Turns an error answer of the token endpoint into kind "auth". */
static void push_refusal(lua_State *L, const Reply *r) {
  const char *code = "invalid_client", *msg = "credentials refused";
  if (cmp_decode(L, r->body ? r->body : "", r->len)) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      if (lua_getfield(L, -1, "error") == LUA_TSTRING)
        code = lua_tostring(L, -1);
      if (lua_getfield(L, -2, "error_description") == LUA_TSTRING)
        msg = lua_tostring(L, -1);
    }
  }
  cmp_pusherror(L, "auth", r->status, code, msg, 0);
}

/* Keeps the token of the answer at the top; 0 when it has none. */
static int keep_token(Client *c, lua_State *L) {
  size_t len;
  const char *token;
  double ttl, margin;
  char *copy;

  if (lua_getfield(L, -1, "access_token") != LUA_TSTRING ||
      lua_getfield(L, -2, "expires_in") != LUA_TNUMBER)
    return 0;
  token = lua_tolstring(L, -2, &len);
  ttl = lua_tonumber(L, -1);
  /* no control character: the token goes into a header line */
  if (len > 4096 || !cmp_clean_string(token, len) || ttl <= 0)
    return 0;
  copy = malloc(len + 1);
  if (copy == NULL)
    return 0;
  memcpy(copy, token, len + 1);
  /* the token before stays live until it expires: an answer to a call
  ** made with it may still echo it, so errs keep scrubbing it */
  cmp_free_secret(&c->old_token);
  c->old_token = c->token;
  c->token = copy;
  c->token_gen++;

  /* renew a few minutes early; a fifth of the life for short ones */
  margin = ttl >= 1500 ? 300 : ttl / 5;
  c->token_expires = cmp_now() + ttl - margin;
  return cmp_set_headers(c);
}

/* Turns the token endpoint's answer into a kept token, or an err. */
static int read_answer(lua_State *L, Client *c, int client_idx, int top) {
  Reply *r = &c->token_slot.reply;

  if (r->rc != CURLE_OK || r->over)
    return cmp_reply(L, r, SHAPE_OBJECT);   /* the network's err */
  if (r->status == 400 || r->status == 401 || r->status == 403) {
    /* a refused credential stays refused: no retry loop (a 429 or 408
    ** is no refusal: it goes through cmp_reply, retryable or not) */
    push_refusal(L, r);
    cmp_scrub_err(L, c, -1);
    lua_getiuservalue(L, client_idx, 1);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, REFUSAL);
    lua_pop(L, 1);
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return 0;
  }
  if (!cmp_reply(L, r, SHAPE_OBJECT)) {
    cmp_scrub_err(L, c, -1);
    return 0;
  }
  if (!keep_token(c, L)) {
    lua_settop(L, top);
    cmp_pusherror(L, "auth", r->status, "BAD_TOKEN_ANSWER",
                  "the token endpoint answered without a usable token", 0);
    return 0;
  }
  lua_settop(L, top);
  return 1;
}

/* Waits, moving the client's other transfers on meanwhile. */
static void pause_for(Client *c, double seconds) {
  double until = cmp_now() + seconds;
  double now;
  while ((now = cmp_now()) < until)
    cmp_step(c, until - now);
}

/*
** With the err of a failed try at the top: may the token request try
** again?  If so, waits as a call would (Retry-After, else backoff) and
** pops the err.
*/
static int retry_token(lua_State *L, Client *c, int tries) {
  double wait;
  int retryable;

  lua_getfield(L, -1, "retryable");
  retryable = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!retryable || tries > c->retries)
    return 0;
  wait = c->token_slot.reply.retry_after;
  if (wait < 0)
    wait = cmp_backoff(c, tries);
  pause_for(c, wait < c->max_wait ? wait : c->max_wait);
  lua_pop(L, 1);
  return 1;
}

/*
** Makes sure the client holds a live token.  Returns 1, or pushes an
** err and returns 0.  client_idx: the client's stack index.
*/
int cmp_token(lua_State *L, Client *c, int client_idx) {
  Reply *r = &c->token_slot.reply;
  int top = lua_gettop(L), ok, tries = 0;

  if (!c->renewable || (c->token && cmp_now() < c->token_expires))
    return 1;
  lua_getiuservalue(L, client_idx, 1);
  if (lua_getfield(L, -1, REFUSAL) != LUA_TNIL) {
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return 0;
  }
  lua_settop(L, top);

  do {
    tries++;
    if (!ask(c)) {
      cmp_pusherror(L, "network", 0, "OUT_OF_MEMORY", "not enough memory",
                    0);
      return 0;
    }
    ok = read_answer(L, c, client_idx, top);

    /* the answer held the token (or an echo of the form): wipe it */
    if (r->body)
      memset(r->body, 0, r->size);
    r->len = 0;
  } while (!ok && retry_token(L, c, tries));
  return ok;
}
