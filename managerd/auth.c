/* vmseal-managerd — password hashes, logins, sessions, the built-in roles,
 * creating a user (users.c: changing and removing users and roles).
 *
 * Passwords: scrypt (OpenSSL EVP_PBE_scrypt, N=2^15, r=8, p=1, 16-byte
 * salt), stored as "scrypt$15$8$1$SALTHEX$HASHHEX"; compared in constant
 * time. Unknown users cost the same time as wrong passwords.
 * Sessions: 32 random bytes as a hex token; only SHA-256(token) is stored,
 * with an expiry (token_ttl).
 * Roles hold a space-separated privilege list; handlers check privileges by
 * name (e.g. "Cryptographer.Encrypt"). Built-in roles: Administrator (every
 * privilege), NoCryptoAdmin ("No cryptography administrator": everything
 * except Cryptographer.* and the host-trust privileges), ReadOnly.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <vmseal/common.h>

#include "managerd.h"

#define SCRYPT_LOG_N 15
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SALT_LEN 16
#define HASH_LEN 32

/* What "No cryptography administrator" lacks (as in vSphere). */
static int nocrypto_excluded(const char *p)
{
    return strncmp(p, "Cryptographer.", 14) == 0 || strcmp(p, "Global.Diagnostics") == 0 ||
           strcmp(p, "Host.Inventory.AddStandaloneHost") == 0;
}

int auth_seed_roles(store *db)
{
    char admin[4096] = "", nocrypto[4096] = "";
    for (const mgr_privilege *p = mgr_privileges; p->name; p++) {
        if (strlen(admin) + strlen(p->name) + 2 > sizeof(admin))
            return vmseal_fail(ENOSPC, "privilege list too long");
        if (admin[0])
            strcat(admin, " ");
        strcat(admin, p->name);
        if (!nocrypto_excluded(p->name)) {
            if (nocrypto[0])
                strcat(nocrypto, " ");
            strcat(nocrypto, p->name);
        }
    }
    const char *roles[][2] = {
        {"Administrator", admin},
        {"NoCryptoAdmin", nocrypto},
        {"ReadOnly", "System.View System.Read"},
        {"NoAccess", ""},
    };
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        /* Built-in roles follow the build: refresh their privilege lists. */
        int rc = store_execv(db, NULL, "UPDATE roles SET privileges = $2, builtin = 1 WHERE name = $1",
                             roles[i][0], roles[i][1], STORE_END);
        if (rc == 0)
            rc = store_execv(db, NULL,
                             "INSERT INTO roles (name, privileges, builtin) VALUES ($1, $2, 1)",
                             roles[i][0], roles[i][1], STORE_END);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* At most this many scrypt computations (32 MiB each) run at once; more
 * logins wait their turn (bounded), so a flood cannot exhaust memory. */
#define MAX_HASHING 4
#define HASH_WAIT_S 10
static pthread_mutex_t hashing_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hashing_free = PTHREAD_COND_INITIALIZER;
static int hashing;

static int hash_slot_take(void)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += HASH_WAIT_S;
    int rc = 0;
    pthread_mutex_lock(&hashing_lock);
    while (hashing >= MAX_HASHING && rc == 0)
        rc = pthread_cond_timedwait(&hashing_free, &hashing_lock, &deadline);
    if (rc == 0)
        hashing++;
    pthread_mutex_unlock(&hashing_lock);
    return rc == 0 ? 0 : vmseal_fail(ENOBUFS, "too many logins at once; try again");
}

static void hash_slot_give(void)
{
    pthread_mutex_lock(&hashing_lock);
    hashing--;
    pthread_cond_signal(&hashing_free);
    pthread_mutex_unlock(&hashing_lock);
}

int auth_password_hash(const char *pw, size_t len, char *out, size_t outlen)
{
    unsigned char salt[SALT_LEN], hash[HASH_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return vmseal_fail(EIO, "random generator failed");
    if (hash_slot_take() < 0)
        return -ENOBUFS;
    int ok = EVP_PBE_scrypt(pw, len, salt, sizeof(salt), 1ull << SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P,
                            64ull << 20, hash, sizeof(hash)) == 1;
    hash_slot_give();
    if (!ok)
        return vmseal_fail(EIO, "scrypt failed");
    char sh[2 * SALT_LEN + 1], hh[2 * HASH_LEN + 1];
    vmseal_hex_encode(salt, sizeof(salt), sh);
    vmseal_hex_encode(hash, sizeof(hash), hh);
    OPENSSL_cleanse(hash, sizeof(hash));
    int n = snprintf(out, outlen, "scrypt$%d$%d$%d$%s$%s", SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, sh, hh);
    OPENSSL_cleanse(hh, sizeof(hh));
    if (n < 0 || (size_t)n >= outlen)
        return vmseal_fail(ENOSPC, "password hash buffer too small");
    return 0;
}

int auth_password_verify(const char *pw, size_t len, const char *stored)
{
    int logn, r, p;
    char sh[2 * SALT_LEN + 1], hh[2 * HASH_LEN + 1];
    if (!stored || sscanf(stored, "scrypt$%d$%d$%d$%32[0-9a-f]$%64[0-9a-f]", &logn, &r, &p, sh, hh) != 5 ||
        logn < 10 || logn > 20 || r < 1 || r > 32 || p < 1 || p > 16 || strlen(sh) != 2 * SALT_LEN ||
        strlen(hh) != 2 * HASH_LEN)
        return vmseal_fail(EINVAL, "stored password hash is malformed");
    unsigned char salt[SALT_LEN], want[HASH_LEN], got[HASH_LEN];
    if (vmseal_hex_decode(sh, strlen(sh), salt, sizeof(salt)) < 0 ||
        vmseal_hex_decode(hh, strlen(hh), want, sizeof(want)) < 0)
        return vmseal_fail(EINVAL, "stored password hash is malformed");
    if (hash_slot_take() < 0)
        return -ENOBUFS;
    int ok = EVP_PBE_scrypt(pw, len, salt, sizeof(salt), 1ull << logn, (uint64_t)r, (uint64_t)p,
                            1ull << 30, got, sizeof(got)) == 1;
    hash_slot_give();
    if (!ok)
        return vmseal_fail(EIO, "scrypt failed");
    int diff = vmseal_memcmp_ct(got, want, sizeof(got));
    OPENSSL_cleanse(got, sizeof(got));
    OPENSSL_cleanse(want, sizeof(want));
    return diff ? vmseal_fail(EACCES, "wrong password") : 0;
}

static int role_exists(store *db, const char *role)
{
    store_rows *r = NULL;
    int rc = store_execv(db, &r, "SELECT name FROM roles WHERE name = $1", role, STORE_END);
    if (rc < 0)
        return rc;
    int n = (int)store_rows_count(r);
    store_rows_free(r);
    return n;
}

int auth_user_create(manager *m, const char *actor, const char *name, const char *password,
                     const char *role)
{
    if (!api_valid_name(name))
        return vmseal_fail(EINVAL, "invalid user name");
    int rc = role_exists(m->db, role);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return vmseal_fail(ENOENT, "no role named %s", role);
    char hash[256];
    rc = auth_password_hash(password, strlen(password), hash, sizeof(hash));
    if (rc < 0)
        return rc;
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    rc = store_execv(m->db, NULL,
                     "INSERT INTO users (name, role, pwhash, created, pw_changed) VALUES ($1, $2, $3, $4, $4)",
                     name, role, hash, now, STORE_END);
    OPENSSL_cleanse(hash, sizeof(hash));
    if (rc == -EEXIST)
        return vmseal_fail(EEXIST, "user %s exists already", name);
    if (rc < 0)
        return rc;
    json_t *nv = json_pack("{s:s,s:s}", "name", name, "role", role);
    event_add(m, actor, "user.create", name, NULL, nv);
    json_decref(nv);
    return 0;
}

static void token_hash(const char *token, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(token, strlen(token), md, &n, EVP_sha256(), NULL);
    vmseal_hex_encode(md, 32, out);
}

void auth_csrf_token(const char *token, char out[65])
{
    static const char label[] = "vmseal-csrf-v1:";
    unsigned char md[32];
    unsigned int n = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(c, label, sizeof(label) - 1) != 1 ||
        EVP_DigestUpdate(c, token, strlen(token)) != 1 || EVP_DigestFinal_ex(c, md, &n) != 1) {
        /* never a usable value: no request can match it */
        memset(out, 0, 65);
        EVP_MD_CTX_free(c);
        return;
    }
    EVP_MD_CTX_free(c);
    vmseal_hex_encode(md, 32, out);
    OPENSSL_cleanse(md, sizeof(md));
}

/* A fixed hash to burn the same time for unknown users. */
static const char dummy_hash[] =
    "scrypt$15$8$1$00000000000000000000000000000000$"
    "0000000000000000000000000000000000000000000000000000000000000000";

/* Failed logins per user name: after LOCK_AFTER failures within
 * LOCK_WINDOW seconds the name is refused for LOCK_SECONDS (also for names
 * that do not exist, so the answer tells nothing). Kept in the database,
 * so a restart does not reset it. Each attempt is counted as a failure
 * *before* its password is checked, in one transaction, and cleared when
 * it succeeds: so however many attempts arrive at once, at most LOCK_AFTER
 * are evaluated. */
#define LOCK_AFTER 5
#define LOCK_WINDOW 300
#define LOCK_SECONDS 60
#define LOCK_ROWS_MAX 10000

struct attempt {
    const char *user;
    int64_t now, wait;
};

static int attempt_tx(store *db, void *arg)
{
    struct attempt *a = arg;
    char now[32], exp[32];
    snprintf(now, sizeof(now), "%lld", (long long)a->now);
    snprintf(exp, sizeof(exp), "%lld", (long long)(a->now - LOCK_WINDOW));
    store_rows *r = NULL;
    int rc = store_execv(db, &r, "SELECT failures, first, locked_until FROM login_failures WHERE user_name = $1",
                         a->user, STORE_END);
    if (rc < 0)
        return rc;
    long failures = 0;
    int64_t first = a->now, until = 0;
    int have = store_rows_count(r) == 1;
    if (have) {
        failures = atol(store_rows_get(r, 0, 0));
        first = atoll(store_rows_get(r, 0, 1));
        until = atoll(store_rows_get(r, 0, 2));
    }
    store_rows_free(r);
    if (until > a->now) {
        a->wait = until - a->now;
        return 0;
    }
    if (a->now - first > LOCK_WINDOW || until) {
        failures = 0;
        first = a->now;
        until = 0;
    }
    if (failures >= LOCK_AFTER) {
        until = a->now + LOCK_SECONDS;
        a->wait = LOCK_SECONDS;
        failures = 0;
    }
    char f[32], fi[32], u[32];
    snprintf(f, sizeof(f), "%ld", a->wait ? failures : failures + 1);
    snprintf(fi, sizeof(fi), "%lld", (long long)first);
    snprintf(u, sizeof(u), "%lld", (long long)until);
    if (!have) {
        /* Bound the table: forget stale names when it grows. */
        (void)store_execv(db, NULL, "DELETE FROM login_failures WHERE first < $1 AND locked_until < $2", exp,
                          now, STORE_END);
        r = NULL;
        rc = store_execv(db, &r, "SELECT COUNT(*) FROM login_failures", STORE_END);
        long n = rc >= 0 ? atol(store_rows_get(r, 0, 0)) : 0;
        store_rows_free(r);
        if (rc < 0)
            return rc;
        if (n >= LOCK_ROWS_MAX) {
            a->wait = LOCK_SECONDS;   /* under attack from many names: everyone waits */
            return 0;
        }
        return store_execv(db, NULL,
                           "INSERT INTO login_failures (user_name, failures, first, locked_until) "
                           "VALUES ($1, $2, $3, $4)",
                           a->user, f, fi, u, STORE_END);
    }
    return store_execv(db, NULL,
                       "UPDATE login_failures SET failures = $2, first = $3, locked_until = $4 WHERE user_name = $1",
                       a->user, f, fi, u, STORE_END);
}

int auth_login(manager *m, const char *user, const char *password, char *token, size_t tlen,
               int64_t *expires)
{
    if (tlen < 65)
        return vmseal_fail(ENOSPC, "token buffer too small");
    struct attempt at = {.user = user, .now = mgr_now()};
    int rc = store_tx(m->db, attempt_tx, &at);
    if (rc < 0)
        return rc;
    if (at.wait > 0)
        return vmseal_fail(EAGAIN, "too many failed logins for %s; try again in %lld s",
                           api_valid_name(user) ? user : "this name", (long long)at.wait);
    store_rows *r = NULL;
    rc = store_execv(m->db, &r, "SELECT pwhash FROM users WHERE name = $1", user, STORE_END);
    if (rc < 0)
        return rc;
    const char *stored = store_rows_get(r, 0, 0);
    int known = stored != NULL;
    rc = auth_password_verify(password, strlen(password), known ? stored : dummy_hash);
    store_rows_free(r);
    if (rc == -ENOBUFS)
        return rc;
    if (rc == 0 && known)
        (void)store_execv(m->db, NULL, "DELETE FROM login_failures WHERE user_name = $1", user, STORE_END);
    if (rc < 0 || !known) {
        mgr_log("login failed for user %s", api_valid_name(user) ? user : "(invalid name)");
        return vmseal_fail(EACCES, "wrong user name or password");
    }
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return vmseal_fail(EIO, "random generator failed");
    vmseal_hex_encode(raw, sizeof(raw), token);
    OPENSSL_cleanse(raw, sizeof(raw));
    char th[65], now[32], exp[32];
    token_hash(token, th);
    int64_t t = mgr_now();
    *expires = t + m->cfg->token_ttl_s;
    snprintf(now, sizeof(now), "%lld", (long long)t);
    snprintf(exp, sizeof(exp), "%lld", (long long)*expires);
    /* Forget expired sessions while we are here. */
    (void)store_execv(m->db, NULL, "DELETE FROM sessions WHERE expires < $1", now, STORE_END);
    rc = store_execv(m->db, NULL,
                     "INSERT INTO sessions (token_hash, user_name, created, expires) VALUES ($1, $2, $3, $4)",
                     th, user, now, exp, STORE_END);
    if (rc < 0) {
        OPENSSL_cleanse(token, 65);
        return rc;
    }
    mgr_log("user %s logged in", user);
    return 0;
}

int auth_logout(manager *m, const char *token)
{
    char th[65];
    token_hash(token, th);
    int rc = store_execv(m->db, NULL, "DELETE FROM sessions WHERE token_hash = $1", th, STORE_END);
    return rc < 0 ? rc : 0;
}

int auth_session(manager *m, const char *token, char *user, size_t ulen, char *role, size_t rlen,
                 char **privileges)
{
    if (!token || strlen(token) != 64)
        return vmseal_fail(EACCES, "missing or malformed session token");
    char th[65], now[32];
    token_hash(token, th);
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "SELECT u.name, u.role FROM sessions s JOIN users u ON u.name = s.user_name "
                         "WHERE s.token_hash = $1 AND s.expires > $2",
                         th, now, STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) != 1) {
        store_rows_free(r);
        return vmseal_fail(EACCES, "session expired or unknown; log in again");
    }
    snprintf(user, ulen, "%s", store_rows_get(r, 0, 0));
    snprintf(role, rlen, "%s", store_rows_get(r, 0, 1));
    store_rows_free(r);
    privset p = 0;
    rc = authz_effective(m, user, "root", &p, NULL);
    if (rc < 0)
        return rc;
    free(*privileges);
    *privileges = privset_string(p);
    return *privileges ? 0 : vmseal_fail(ENOMEM, "out of memory");
}

int auth_set_password(manager *m, const char *user, const char *password, const char *keep_token)
{
    size_t len = strlen(password);
    if (len < 8 || len > 1024)
        return vmseal_fail(EINVAL, "a password has 8 to 1024 characters");
    char hash[256], now[32], th[65] = "";
    int rc = auth_password_hash(password, len, hash, sizeof(hash));
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "UPDATE users SET pwhash = $2, pw_changed = $3 WHERE name = $1", user,
                         hash, now, STORE_END);
    OPENSSL_cleanse(hash, sizeof(hash));
    if (rc == 0)
        return vmseal_fail(ENOENT, "no user named %s", user);
    if (rc < 0)
        return rc;
    /* Every other session of that user ends (the caller's own stays). */
    if (keep_token)
        token_hash(keep_token, th);
    rc = store_execv(m->db, NULL, "DELETE FROM sessions WHERE user_name = $1 AND token_hash <> $2", user, th,
                     STORE_END);
    return rc < 0 ? rc : 0;
}
