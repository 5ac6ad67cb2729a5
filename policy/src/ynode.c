/* ynode.c: safe YAML loading into a small tree of struct ynode.
 *
 * Policy files and the gateway configuration are read with libyaml's event API
 * and turned into a plain tree (scalars, mappings, sequences) that remembers the
 * 1-based line and column of every node and mapping key. The loader refuses the
 * classic YAML hazards instead of interpreting them: documents over 1 MiB, more
 * than one document, alias bombs (at most 16 aliases and 10,000 nodes copied by
 * them), nesting deeper than 32, duplicate or non-scalar mapping keys, NUL bytes
 * in scalars and explicit tags other than the standard ones. Booleans are not
 * resolved here: callers see the raw scalar and whether it was quoted.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <yaml.h>

#include "policy_internal.h"

#define YNODE_MAX_DEPTH 32
#define YNODE_MAX_ALIASES 16
#define YNODE_MAX_ALIAS_NODES 10000
#define YNODE_MAX_NODES 200000

struct anchor {
    char *name;
    const struct ynode *node; /* borrowed from the tree being built */
};

struct frame {
    struct ynode *node;
    char *anchor; /* registered when the collection ends */
    char *key;    /* YNODE_MAP: key waiting for its value */
    struct policy_loc key_loc;
};

struct builder {
    const char *name;
    struct gate_error *err;
    struct frame stack[YNODE_MAX_DEPTH + 1];
    int depth;
    struct ynode *root;
    struct anchor *anchors;
    size_t nanchors;
    unsigned aliases;
    size_t alias_nodes;
    size_t nodes;
    int docs;
};

static struct policy_loc mark_loc(yaml_mark_t m)
{
    return (struct policy_loc){.line = (int)m.line + 1, .col = (int)m.column + 1};
}

__attribute__((format(printf, 3, 4))) static int berr(struct builder *b, struct policy_loc loc,
                                                      const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return gate_err(b->err, GATE_E_CONFIG, "%s:%d:%d: %s", b->name, loc.line, loc.col, msg);
}

void ynode_free(struct ynode *n)
{
    if (!n) return;
    free(n->scalar);
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys) free(n->keys[i]);
        ynode_free(n->items[i]);
    }
    free(n->keys);
    free(n->key_locs);
    free(n->items);
    free(n);
}

struct policy_loc *ynode_item_locs(const struct ynode *n)
{
    if (n->kind != YNODE_SEQ) return NULL;
    struct policy_loc *locs = calloc(n->n ? n->n : 1, sizeof(*locs));
    for (size_t i = 0; locs && i < n->n; i++)
        locs[i] = n->items[i]->loc;
    return locs;
}

const struct ynode *ynode_get(const struct ynode *map, const char *key)
{
    if (!map || map->kind != YNODE_MAP || !key) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) return map->items[i];
    return NULL;
}

static struct ynode *node_new(struct builder *b, enum ynode_kind kind, struct policy_loc loc)
{
    if (++b->nodes > YNODE_MAX_NODES) {
        berr(b, loc, "document has more than %d nodes", YNODE_MAX_NODES);
        return NULL;
    }
    struct ynode *n = calloc(1, sizeof(*n));
    if (!n) {
        gate_err(b->err, GATE_E_NOMEM, "%s: out of memory", b->name);
        return NULL;
    }
    n->kind = kind;
    n->loc = loc;
    return n;
}

/* Grow a mapping or sequence by one slot. */
static int node_push(struct builder *b, struct ynode *parent, char *key, struct policy_loc key_loc,
                     struct ynode *child)
{
    size_t n = parent->n;
    /* Growing by powers of two: reallocate when n is 0 or a power of two. */
    if ((n & (n - 1)) == 0) {
        size_t cap = n ? n * 2 : 1;
        struct ynode **items = realloc(parent->items, cap * sizeof(*items));
        if (!items) return gate_err(b->err, GATE_E_NOMEM, "%s: out of memory", b->name);
        parent->items = items;
        if (parent->kind == YNODE_MAP) {
            char **keys = realloc(parent->keys, cap * sizeof(*keys));
            if (!keys) return gate_err(b->err, GATE_E_NOMEM, "%s: out of memory", b->name);
            parent->keys = keys;
            struct policy_loc *locs = realloc(parent->key_locs, cap * sizeof(*locs));
            if (!locs) return gate_err(b->err, GATE_E_NOMEM, "%s: out of memory", b->name);
            parent->key_locs = locs;
        }
    }
    if (parent->kind == YNODE_MAP) {
        parent->keys[n] = key;
        parent->key_locs[n] = key_loc;
    }
    parent->items[n] = child;
    parent->n = n + 1;
    return 0;
}

/* Hand a finished node to its parent (or make it the root). Takes ownership of child. */
static int attach(struct builder *b, struct ynode *child)
{
    if (b->depth == 0) {
        b->root = child;
        return 0;
    }
    struct frame *f = &b->stack[b->depth - 1];
    if (f->node->kind == YNODE_SEQ) {
        if (node_push(b, f->node, NULL, child->loc, child) < 0) {
            ynode_free(child);
            return -1;
        }
        return 0;
    }
    if (!f->key) {
        if (child->kind != YNODE_SCALAR) {
            int rc = berr(b, child->loc, "mapping keys must be scalars");
            ynode_free(child);
            return rc;
        }
        f->key = steal_pointer(&child->scalar);
        f->key_loc = child->loc;
        ynode_free(child);
        return 0;
    }
    char *key = steal_pointer(&f->key);
    if (node_push(b, f->node, key, f->key_loc, child) < 0) {
        free(key);
        ynode_free(child);
        return -1;
    }
    return 0;
}

static int add_anchor(struct builder *b, char *name, const struct ynode *node)
{
    if (!name) return 0;
    struct anchor *a = realloc(b->anchors, (b->nanchors + 1) * sizeof(*a));
    if (!a) {
        free(name);
        return gate_err(b->err, GATE_E_NOMEM, "%s: out of memory", b->name);
    }
    b->anchors = a;
    b->anchors[b->nanchors++] = (struct anchor){.name = name, .node = node};
    return 0;
}

/* Deep copy for an alias, charging every copied node to the alias budget and refusing a
 * copy that would nest deeper than the document limit where it lands. */
static struct ynode *copy_node(struct builder *b, const struct ynode *src, struct policy_loc at,
                               int depth)
{
    if (++b->alias_nodes > YNODE_MAX_ALIAS_NODES) {
        berr(b, at, "aliases expand to more than %d nodes", YNODE_MAX_ALIAS_NODES);
        return NULL;
    }
    if (src->kind != YNODE_SCALAR && depth >= YNODE_MAX_DEPTH) {
        berr(b, at, "alias expands to nesting deeper than %d levels", YNODE_MAX_DEPTH);
        return NULL;
    }
    struct ynode *n = node_new(b, src->kind, src->loc);
    if (!n) return NULL;
    n->quoted = src->quoted;
    if (src->scalar && !(n->scalar = strdup(src->scalar))) goto nomem;
    for (size_t i = 0; i < src->n; i++) {
        struct ynode *child = copy_node(b, src->items[i], at, depth + 1);
        if (!child) goto fail;
        char *key = NULL;
        if (src->kind == YNODE_MAP && !(key = strdup(src->keys[i]))) {
            ynode_free(child);
            goto nomem;
        }
        if (node_push(b, n, key, src->kind == YNODE_MAP ? src->key_locs[i] : child->loc, child) <
            0) {
            free(key);
            ynode_free(child);
            goto fail;
        }
    }
    return n;
nomem:
    gate_err(b->err, GATE_E_NOMEM, "%s: out of memory", b->name);
fail:
    ynode_free(n);
    return NULL;
}

static int on_alias(struct builder *b, const yaml_event_t *ev)
{
    struct policy_loc loc = mark_loc(ev->start_mark);
    if (++b->aliases > YNODE_MAX_ALIASES)
        return berr(b, loc, "more than %d aliases", YNODE_MAX_ALIASES);
    const char *name = (const char *)ev->data.alias.anchor;
    const struct ynode *target = NULL;
    /* The latest definition wins; an anchor whose collection is still open (a recursive
     * alias) has not been registered yet and is refused as undefined. */
    for (size_t i = b->nanchors; i-- > 0;)
        if (strcmp(b->anchors[i].name, name) == 0) {
            target = b->anchors[i].node;
            break;
        }
    if (!target) return berr(b, loc, "alias '*%s' refers to an undefined anchor", name);
    struct ynode *copy = copy_node(b, target, loc, b->depth);
    if (!copy) return -1;
    copy->loc = loc;
    return attach(b, copy);
}

static const char *const allowed_tags[] = {
    "tag:yaml.org,2002:str",  "tag:yaml.org,2002:int",  "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
};

/* Only the standard tags are accepted, each on the kind of node it describes. */
static int check_tag(struct builder *b, const yaml_char_t *tag, enum ynode_kind kind,
                     struct policy_loc loc)
{
    if (!tag) return 0;
    const char *t = (const char *)tag;
    for (size_t i = 0; i < sizeof(allowed_tags) / sizeof(allowed_tags[0]); i++) {
        if (strcmp(t, allowed_tags[i]) != 0) continue;
        bool is_map = strcmp(t, "tag:yaml.org,2002:map") == 0;
        bool is_seq = strcmp(t, "tag:yaml.org,2002:seq") == 0;
        if ((kind == YNODE_MAP) != is_map || (kind == YNODE_SEQ) != is_seq)
            return berr(b, loc, "tag '%s' does not match the node it is on", t);
        return 0;
    }
    return berr(b, loc, "explicit tag '%s' is not allowed", t);
}

static int on_scalar(struct builder *b, yaml_event_t *ev)
{
    struct policy_loc loc = mark_loc(ev->start_mark);
    if (check_tag(b, ev->data.scalar.tag, YNODE_SCALAR, loc) < 0) return -1;
    size_t len = ev->data.scalar.length;
    if (memchr(ev->data.scalar.value, '\0', len))
        return berr(b, loc, "scalar contains a NUL character");
    if (b->depth > 0 && b->stack[b->depth - 1].node->kind == YNODE_MAP &&
        !b->stack[b->depth - 1].key && ev->data.scalar.anchor)
        return berr(b, loc, "anchors on mapping keys are not supported");
    struct ynode *n = node_new(b, YNODE_SCALAR, loc);
    if (!n) return -1;
    n->scalar = strndup((const char *)ev->data.scalar.value, len);
    if (!n->scalar) {
        ynode_free(n);
        return gate_err(b->err, GATE_E_NOMEM, "%s: out of memory", b->name);
    }
    const char *tag = (const char *)ev->data.scalar.tag;
    n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                (tag && strcmp(tag, "tag:yaml.org,2002:str") == 0);
    char *anchor = NULL;
    if (ev->data.scalar.anchor && !(anchor = strdup((const char *)ev->data.scalar.anchor))) {
        ynode_free(n);
        return gate_err(b->err, GATE_E_NOMEM, "%s: out of memory", b->name);
    }
    const struct ynode *borrowed = n;
    if (attach(b, n) < 0) {
        free(anchor);
        return -1;
    }
    return add_anchor(b, anchor, borrowed);
}

static int on_start(struct builder *b, yaml_event_t *ev, enum ynode_kind kind)
{
    struct policy_loc loc = mark_loc(ev->start_mark);
    const yaml_char_t *tag =
        kind == YNODE_MAP ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    const yaml_char_t *anchor =
        kind == YNODE_MAP ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    if (check_tag(b, tag, kind, loc) < 0) return -1;
    if (b->depth > 0 && b->stack[b->depth - 1].node->kind == YNODE_MAP &&
        !b->stack[b->depth - 1].key)
        return berr(b, loc, "mapping keys must be scalars");
    if (b->depth >= YNODE_MAX_DEPTH)
        return berr(b, loc, "nesting deeper than %d levels", YNODE_MAX_DEPTH);
    struct ynode *n = node_new(b, kind, loc);
    if (!n) return -1;
    struct frame *f = &b->stack[b->depth];
    *f = (struct frame){.node = n};
    if (anchor && !(f->anchor = strdup((const char *)anchor))) {
        ynode_free(n);
        return gate_err(b->err, GATE_E_NOMEM, "%s: out of memory", b->name);
    }
    b->depth++;
    return 0;
}

struct key_ref {
    const char *key;
    size_t index;
};

static int key_ref_cmp(const void *a, const void *b)
{
    const struct key_ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c) return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Duplicate keys are found by sorting (a 1 MiB mapping must not cost n^2 comparisons); the
 * error names the earliest repeated key in document order, at its own location. */
static int check_duplicates(struct builder *b, const struct ynode *map)
{
    if (map->n < 2) return 0;
    struct key_ref *refs = malloc(map->n * sizeof(*refs));
    if (!refs) return gate_err(b->err, GATE_E_NOMEM, "%s: out of memory", b->name);
    for (size_t i = 0; i < map->n; i++)
        refs[i] = (struct key_ref){.key = map->keys[i], .index = i};
    qsort(refs, map->n, sizeof(*refs), key_ref_cmp);
    size_t dup = SIZE_MAX, first = 0;
    for (size_t i = 1; i < map->n; i++)
        if (strcmp(refs[i].key, refs[i - 1].key) == 0 && refs[i].index < dup) {
            dup = refs[i].index;
            first = refs[i - 1].index;
        }
    free(refs);
    if (dup == SIZE_MAX) return 0;
    return berr(b, map->key_locs[dup], "duplicate key '%s' (first at line %d, column %d)",
                map->keys[dup], map->key_locs[first].line, map->key_locs[first].col);
}

static int on_end(struct builder *b)
{
    struct frame *f = &b->stack[--b->depth];
    struct ynode *n = f->node;
    char *anchor = steal_pointer(&f->anchor);
    free(f->key);
    f->key = NULL;
    f->node = NULL;
    if (n->kind == YNODE_MAP && check_duplicates(b, n) < 0) {
        free(anchor);
        ynode_free(n);
        return -1;
    }
    if (attach(b, n) < 0) {
        free(anchor);
        return -1;
    }
    return add_anchor(b, anchor, n);
}

static int on_event(struct builder *b, yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++b->docs > 1) return berr(b, mark_loc(ev->start_mark), "more than one YAML document");
        return 0;
    case YAML_ALIAS_EVENT:
        return on_alias(b, ev);
    case YAML_SCALAR_EVENT:
        return on_scalar(b, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(b, ev, YNODE_SEQ);
    case YAML_MAPPING_START_EVENT:
        return on_start(b, ev, YNODE_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return on_end(b);
    default:
        return 0;
    }
}

static void builder_free(struct builder *b)
{
    while (b->depth > 0) {
        struct frame *f = &b->stack[--b->depth];
        free(f->anchor);
        free(f->key);
        ynode_free(f->node);
    }
    for (size_t i = 0; i < b->nanchors; i++)
        free(b->anchors[i].name);
    free(b->anchors);
    ynode_free(b->root);
}

/* libyaml's reader errors carry a byte offset, not a mark: count lines up to it. */
static struct policy_loc offset_loc(const char *buf, size_t len, size_t offset)
{
    struct policy_loc loc = {1, 1};
    for (size_t i = 0; i < offset && i < len; i++) {
        if (buf[i] == '\n') {
            loc.line++;
            loc.col = 1;
        } else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
            loc.col++;
        }
    }
    return loc;
}

static int parser_error(struct builder *b, const yaml_parser_t *p, const char *buf, size_t len)
{
    struct policy_loc loc = mark_loc(p->problem_mark);
    if (p->error == YAML_READER_ERROR) loc = offset_loc(buf, len, p->problem_offset);
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->context) return berr(b, loc, "%s %s", problem, p->context);
    return berr(b, loc, "%s", problem);
}

int ynode_load_buf(const char *name, const char *buf, size_t len, struct ynode **out,
                   struct gate_error *err)
{
    struct builder b = {.name = name, .err = err};
    if (len > POLICY_YAML_MAX_BYTES)
        return berr(&b, (struct policy_loc){1, 1}, "document larger than 1 MiB");
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return gate_err(err, GATE_E_NOMEM, "%s: out of memory", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    int rc = 0;
    for (bool done = false; !done && rc == 0;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = parser_error(&b, &parser, buf, len);
            break;
        }
        rc = on_event(&b, &ev);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (rc == 0 && !b.root) rc = berr(&b, (struct policy_loc){1, 1}, "empty YAML document");
    if (rc == 0) *out = steal_pointer(&b.root);
    builder_free(&b);
    return rc;
}

/* Open name beneath dirfd. Symlinks are followed only while they stay inside the directory:
 * RESOLVE_BENEATH refuses absolute links and ".." past dirfd, so a link to /etc/shadow is
 * never opened, let alone parsed and quoted in an error. O_NONBLOCK keeps a FIFO (or a device)
 * from blocking the open; read_regular refuses anything that is not a regular file. */
static int open_beneath(int dirfd, const char *name)
{
    struct open_how how = {.flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
    /* A kernel without openat2 (before 5.6): follow no symlink at all rather than any. */
    if (fd < 0 && errno == ENOSYS) fd = openat(dirfd, name, (int)how.flags | O_NOFOLLOW);
    return fd;
}

static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "a special file";
}

/* Read all of fd (from open_beneath or an O_NONBLOCK open) if it is a regular file of at most
 * 1 MiB. Nothing is read from anything else: a FIFO would block, a device never end. */
static int read_regular(int fd, const char *display, char **buf, size_t *len,
                        struct gate_error *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return gate_err_errno(err, GATE_E_IO, errno, "%s:1:1: cannot read", display);
    if (!S_ISREG(st.st_mode))
        return gate_err(err, GATE_E_CONFIG, "%s:1:1: %s, not a regular file: not read", display,
                        file_kind(st.st_mode));
    if ((uint64_t)st.st_size > POLICY_YAML_MAX_BYTES)
        return gate_err(err, GATE_E_CONFIG, "%s:1:1: document larger than 1 MiB", display);
    /* Sized by fstat, with a byte to spare (review tools read thousands of files: a buffer of
     * the cap each time is an mmap and munmap per file). A file that grew since fstat gets room
     * up to one byte past the cap, enough to tell that it is too large. */
    size_t room = (size_t)st.st_size + 1;
    autofree char *data = malloc(room + 1);
    if (!data) return gate_err(err, GATE_E_NOMEM, "%s:1:1: out of memory", display);
    size_t n = 0;
    while (n <= POLICY_YAML_MAX_BYTES) {
        if (n == room) {
            room = POLICY_YAML_MAX_BYTES + 1;
            char *grown = realloc(data, room + 1);
            if (!grown) return gate_err(err, GATE_E_NOMEM, "%s:1:1: out of memory", display);
            data = grown;
        }
        ssize_t r = read(fd, data + n, room - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return gate_err_errno(err, GATE_E_IO, errno, "%s:1:1: cannot read", display);
        if (r == 0) break;
        n += (size_t)r;
    }
    if (n > POLICY_YAML_MAX_BYTES)
        return gate_err(err, GATE_E_CONFIG, "%s:1:1: document larger than 1 MiB", display);
    data[n] = '\0';
    *buf = steal_pointer(&data);
    *len = n;
    return 0;
}

int ynode_load_file(const char *path, struct ynode **out, struct gate_error *err)
{
    /* A file the operator names (the gateway's --config) is opened as named, links included;
     * still, only a regular file is read. */
    autoclose int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return gate_err_errno(err, GATE_E_IO, errno, "%s:1:1: cannot read", path);
    autofree char *buf = NULL;
    size_t len = 0;
    if (read_regular(fd, path, &buf, &len, err) < 0) return -1;
    return ynode_load_buf(path, buf, len, out, err);
}

int policy_read_yaml_at(int dirfd, const char *name, const char *display, char **buf, size_t *len,
                        struct gate_error *err)
{
    autoclose int fd = open_beneath(dirfd, name);
    if (fd < 0 && errno == EXDEV)
        return gate_err(err, GATE_E_CONFIG,
                        "%s:1:1: symbolic link leading outside its directory: not followed",
                        display);
    if (fd < 0 && errno == ELOOP)
        return gate_err(err, GATE_E_CONFIG, "%s:1:1: symbolic link: not followed", display);
    if (fd < 0) return gate_err_errno(err, GATE_E_IO, errno, "%s:1:1: cannot read", display);
    return read_regular(fd, display, buf, len, err);
}

int policy_read_yaml_file(const char *path, char **buf, size_t *len, struct gate_error *err)
{
    /* The directory is opened as named (it may be reached through links); the file in it is
     * read under the rule of every file of a policy directory. */
    autofree char *copy = strdup(path);
    if (!copy) return gate_err(err, GATE_E_NOMEM, "%s:1:1: out of memory", path);
    char *slash = strrchr(copy, '/');
    const char *dir = ".", *name = copy;
    if (slash) {
        *slash = '\0';
        dir = slash == copy ? "/" : copy;
        name = slash + 1;
    }
    autoclose int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) return gate_err_errno(err, GATE_E_IO, errno, "%s:1:1: cannot read", path);
    return policy_read_yaml_at(dirfd, name, path, buf, len, err);
}
