/* records.c: the records of recent direct calls, for GET /v1/calls/{id}.
 *
 * A call is recorded as "running" once its call.started record is durable and replaced by its
 * result when it finishes. Held calls are not kept here: their record lives in the approval
 * store, so exactly one store answers for any call. Bounded by count and by bytes: a chatty
 * tool must not grow the gateway without end.
 */
#include <stdlib.h>
#include <string.h>

#include "calls_internal.h"

#define RECORDS_KEPT 16384
#define RECORDS_MAX_BYTES (256u << 20)
#define AGENT_MAX 256

struct record_slot {
    char id[40];
    char agent[AGENT_MAX + 1];
    json_t *record;
    size_t bytes;
};

struct call_records {
    pthread_mutex_t lock;
    struct record_slot ring[RECORDS_KEPT];
    size_t head;  /* oldest record */
    size_t count; /* records kept */
    size_t bytes; /* their approximate size */
};

struct call_records *call_records_new(void)
{
    struct call_records *r = calloc(1, sizeof(*r));
    if (r) pthread_mutex_init(&r->lock, NULL);
    return r;
}

void call_records_free(struct call_records *r)
{
    if (!r) return;
    for (size_t i = 0; i < RECORDS_KEPT; i++)
        json_decref(r->ring[i].record);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void evict_oldest(struct call_records *r)
{
    struct record_slot *s = &r->ring[r->head];
    json_decref(s->record);
    s->record = NULL;
    r->bytes -= s->bytes;
    r->head = (r->head + 1) % RECORDS_KEPT;
    r->count--;
}

/* Newest first: a call is looked up (or finished) soon after it started, so the scan is short;
 * a miss scans the bounded ring in a few microseconds. Called with the lock held. */
static struct record_slot *find(struct call_records *r, const char *call_id)
{
    for (size_t k = r->count; k-- > 0;) {
        struct record_slot *s = &r->ring[(r->head + k) % RECORDS_KEPT];
        if (strcmp(s->id, call_id) == 0) return s;
    }
    return NULL;
}

void call_records_put(struct call_records *r, const char *call_id, const char *agent,
                      json_t *record, size_t bytes)
{
    if (bytes > RECORDS_MAX_BYTES) bytes = RECORDS_MAX_BYTES; /* kept alone, evicted next */
    pthread_mutex_lock(&r->lock);
    struct record_slot *s = find(r, call_id);
    if (s) {
        json_decref(s->record);
        r->bytes -= s->bytes;
    } else {
        while (r->count && (r->count == RECORDS_KEPT || r->bytes + bytes > RECORDS_MAX_BYTES))
            evict_oldest(r);
        s = &r->ring[(r->head + r->count) % RECORDS_KEPT];
        snprintf(s->id, sizeof(s->id), "%s", call_id);
        snprintf(s->agent, sizeof(s->agent), "%s", agent ? agent : "");
        r->count++;
    }
    s->record = json_incref(record);
    s->bytes = bytes;
    r->bytes += bytes;
    pthread_mutex_unlock(&r->lock);
}

json_t *call_records_get(struct call_records *r, const char *call_id, const char *agent)
{
    json_t *found = NULL;
    pthread_mutex_lock(&r->lock);
    struct record_slot *s = find(r, call_id);
    if (s && (!agent || strcmp(s->agent, agent) == 0)) found = json_incref(s->record);
    pthread_mutex_unlock(&r->lock);
    return found;
}
