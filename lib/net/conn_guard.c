/* Admission of unauthenticated connections: per-address handshake cap,
 * totals, and shedding of the biggest address's oldest idle connections
 * (see include/vmseal/conn_guard.h). The tables are small (one entry per
 * connection and per source address, bounded by max_conns), so they are
 * plain lists scanned under one lock; the scans run only when a total is
 * reached. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmseal/conn_guard.h>

/* An address gives up its own connections only when they have been in
 * their state this long: it cannot make the server spend a handshake and a
 * teardown on every connection it opens (a flood of finished handshakes
 * would otherwise churn through its own slots as fast as it connects). */
#define SELF_SHED_MIN_AGE_MS 1000

struct addr_rec {
    unsigned char key[16];        /* IPv4-mapped address, or an IPv6 /64 */
    unsigned conns, handshakes;
    struct addr_rec *next;
};

struct vmseal_conn_slot {
    int fd;
    vmseal_conn_state state;
    int shed;                     /* shut down by the guard: no longer counted */
    int64_t since;                /* ms: accepted, or last became IDLE */
    struct addr_rec *addr;        /* NULL once shed */
    vmseal_conn_slot *prev, *next;
};

struct vmseal_conn_guard {
    pthread_mutex_t lock;
    vmseal_conn_limits lim;
    unsigned conns, handshakes;   /* counted slots */
    unsigned live;                /* allocated slots, shed ones included */
    vmseal_conn_slot *slots;      /* counted slots */
    struct addr_rec *addrs;
    unsigned long long refused, shed;
};

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void addr_key(const struct sockaddr *sa, socklen_t len, unsigned char key[16])
{
    memset(key, 0, 16);
    if (sa && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &a->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            memcpy(key, &a->sin6_addr, 16);   /* same key as plain IPv4 */
        else
            memcpy(key, &a->sin6_addr, 8);    /* one client usually owns a /64 */
    }
}

vmseal_conn_guard *vmseal_conn_guard_new(const vmseal_conn_limits *limits)
{
    if (!limits || !limits->max_conns)
        return NULL;
    vmseal_conn_guard *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->lim = *limits;
    if (!g->lim.max_handshakes || g->lim.max_handshakes > g->lim.max_conns)
        g->lim.max_handshakes = g->lim.max_conns;
    if (!g->lim.max_handshakes_per_addr || g->lim.max_handshakes_per_addr > g->lim.max_handshakes)
        g->lim.max_handshakes_per_addr = g->lim.max_handshakes;
    pthread_mutex_init(&g->lock, NULL);
    return g;
}

void vmseal_conn_guard_free(vmseal_conn_guard *g)
{
    if (!g)
        return;
    while (g->slots) {
        vmseal_conn_slot *s = g->slots;
        g->slots = s->next;
        free(s);
    }
    while (g->addrs) {
        struct addr_rec *a = g->addrs;
        g->addrs = a->next;
        free(a);
    }
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static struct addr_rec *addr_find(vmseal_conn_guard *g, const unsigned char key[16])
{
    for (struct addr_rec *a = g->addrs; a; a = a->next)
        if (memcmp(a->key, key, 16) == 0)
            return a;
    return NULL;
}

/* Take a counted slot out of the counts and the list (under the lock). */
static void uncount(vmseal_conn_guard *g, vmseal_conn_slot *s)
{
    struct addr_rec *a = s->addr;
    if (s->state == VMSEAL_CONN_HANDSHAKE) {
        a->handshakes--;
        g->handshakes--;
    }
    a->conns--;
    g->conns--;
    if (a->conns == 0) {
        for (struct addr_rec **pp = &g->addrs; *pp; pp = &(*pp)->next) {
            if (*pp == a) {
                *pp = a->next;
                free(a);
                break;
            }
        }
    }
    s->addr = NULL;
    if (s->prev)
        s->prev->next = s->next;
    else
        g->slots = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* Whether s is a better victim than best: HANDSHAKE before IDLE, then the
 * oldest. */
static int better_victim(const vmseal_conn_slot *s, const vmseal_conn_slot *best)
{
    if (!best)
        return 1;
    if (s->state != best->state)
        return s->state == VMSEAL_CONN_HANDSHAKE;
    return s->since < best->since;
}

/* Shed one connection to make room for a newcomer from address mine (NULL:
 * a new address). handshakes_only: the handshake total is what is full.
 * 0 when a connection was shed. */
static int make_room(vmseal_conn_guard *g, const struct addr_rec *mine, int handshakes_only)
{
    unsigned my_count = mine ? (handshakes_only ? mine->handshakes : mine->conns) : 0;
    vmseal_conn_slot *best = NULL, *own = NULL;
    unsigned best_count = 0;
    int64_t old_enough = now_ms() - SELF_SHED_MIN_AGE_MS;
    for (vmseal_conn_slot *s = g->slots; s; s = s->next) {
        if (s->state == VMSEAL_CONN_ACTIVE)
            continue;
        if (handshakes_only && s->state != VMSEAL_CONN_HANDSHAKE)
            continue;
        if (s->addr == mine) {
            if (s->since <= old_enough && better_victim(s, own))
                own = s;
            continue;
        }
        unsigned count = handshakes_only ? s->addr->handshakes : s->addr->conns;
        if (count < my_count + 2)
            continue;   /* not bigger than the newcomer would be */
        if (count > best_count || (count == best_count && better_victim(s, best))) {
            best = s;
            best_count = count;
        }
    }
    vmseal_conn_slot *v = best ? best : own;
    if (!v)
        return -1;
    shutdown(v->fd, SHUT_RDWR);
    uncount(g, v);
    v->shed = 1;
    g->shed++;
    return 0;
}

vmseal_conn_slot *vmseal_conn_guard_admit(vmseal_conn_guard *g, int fd, const struct sockaddr *addr,
                                          socklen_t addrlen, const char **why)
{
    unsigned char key[16];
    addr_key(addr, addrlen, key);
    const char *reason = NULL;
    vmseal_conn_slot *s = NULL;
    pthread_mutex_lock(&g->lock);
    struct addr_rec *a = addr_find(g, key);
    if (g->live >= 2 * g->lim.max_conns) {
        reason = "too many connections still closing";
    } else if (a && a->handshakes >= g->lim.max_handshakes_per_addr &&
               2 * g->handshakes >= g->lim.max_handshakes) {
        /* the per-address cap binds once half the handshake slots are in
         * use: a burst of honest clients behind one address gets through
         * an idle server, a flood from one address takes at most half */
        reason = "too many TLS handshakes in progress from this address";
    } else if (g->handshakes >= g->lim.max_handshakes && make_room(g, a, 1) < 0) {
        reason = "too many TLS handshakes in progress";
    } else if (g->conns >= g->lim.max_conns && make_room(g, a, 0) < 0) {
        reason = "too many connections";
    }
    if (!reason) {
        a = addr_find(g, key);   /* make_room may have freed it */
        s = calloc(1, sizeof(*s));
        if (s && !a) {
            a = calloc(1, sizeof(*a));
            if (a) {
                memcpy(a->key, key, 16);
                a->next = g->addrs;
                g->addrs = a;
            }
        }
        if (!s || !a) {
            free(s);
            s = NULL;
            reason = "out of memory";
        }
    }
    if (s) {
        s->fd = fd;
        s->state = VMSEAL_CONN_HANDSHAKE;
        s->since = now_ms();
        s->addr = a;
        a->conns++;
        a->handshakes++;
        g->conns++;
        g->handshakes++;
        g->live++;
        s->next = g->slots;
        if (g->slots)
            g->slots->prev = s;
        g->slots = s;
    } else {
        g->refused++;
    }
    pthread_mutex_unlock(&g->lock);
    if (why)
        *why = reason;
    return s;
}

void vmseal_conn_guard_set_state(vmseal_conn_guard *g, vmseal_conn_slot *s, vmseal_conn_state st)
{
    if (!s)
        return;
    pthread_mutex_lock(&g->lock);
    if (!s->shed && s->state != st) {
        if (s->state == VMSEAL_CONN_HANDSHAKE) {
            s->addr->handshakes--;
            g->handshakes--;
        } else if (st == VMSEAL_CONN_HANDSHAKE) {
            s->addr->handshakes++;
            g->handshakes++;
        }
        s->state = st;
        if (st == VMSEAL_CONN_IDLE)
            s->since = now_ms();
    }
    pthread_mutex_unlock(&g->lock);
}

int vmseal_conn_guard_was_shed(vmseal_conn_guard *g, vmseal_conn_slot *s)
{
    if (!s)
        return 0;
    pthread_mutex_lock(&g->lock);
    int r = s->shed;
    pthread_mutex_unlock(&g->lock);
    return r;
}

void vmseal_conn_guard_release(vmseal_conn_guard *g, vmseal_conn_slot *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&g->lock);
    if (!s->shed)
        uncount(g, s);
    g->live--;
    pthread_mutex_unlock(&g->lock);
    free(s);
}

void vmseal_conn_guard_shutdown(vmseal_conn_guard *g, unsigned state_mask)
{
    pthread_mutex_lock(&g->lock);
    for (vmseal_conn_slot *s = g->slots; s; s = s->next)
        if (state_mask & (1u << s->state))
            shutdown(s->fd, SHUT_RDWR);
    pthread_mutex_unlock(&g->lock);
}

void vmseal_conn_guard_stats(vmseal_conn_guard *g, vmseal_conn_stats *out)
{
    pthread_mutex_lock(&g->lock);
    out->conns = g->conns;
    out->handshakes = g->handshakes;
    out->addrs = 0;
    for (struct addr_rec *a = g->addrs; a; a = a->next)
        out->addrs++;
    out->refused = g->refused;
    out->shed = g->shed;
    pthread_mutex_unlock(&g->lock);
}
