/* HTTPS/JSON client: libcurl (OpenSSL backend) + jansson. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include <vmseal/http_client.h>

struct vmseal_http_client {
    CURL *curl;
    char *ca_file, *cert_file, *key_file, *pinned;
    const char *ca_pem, *cert_pem, *key_pem;   /* the caller's, outlive the client */
    char *auth_header;          /* "Authorization: Bearer ..." (wiped) */
    long connect_timeout_ms, timeout_ms;
    size_t max_response;
    char errbuf[CURL_ERROR_SIZE];
};

struct buf {
    char *p;
    size_t len, cap, max;
    int overflow;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void wipe_str(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void buf_wipe(struct buf *b)
{
    if (b->p) {
        OPENSSL_cleanse(b->p, b->cap);
        free(b->p);
    }
    memset(b, 0, sizeof(*b));
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t n = size * nmemb;
    if (n > b->max - b->len) {
        b->overflow = 1;
        return 0;   /* aborts the transfer */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = malloc(cap);
        if (!np)
            return 0;
        if (b->p) {
            memcpy(np, b->p, b->len);
            OPENSSL_cleanse(b->p, b->cap);
            free(b->p);
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, ptr, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

void vmseal_http_client_free(vmseal_http_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->pinned);
    wipe_str(c->auth_header);
    free(c);
}

int vmseal_http_client_new(const vmseal_http_client_config *cfg, vmseal_http_client **out)
{
    *out = NULL;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return vmseal_fail(EIO, "http: libcurl initialisation failed");
    if (!cfg->ca_file && !cfg->ca_pem)
        return vmseal_fail(EINVAL, "http: a CA file is required to verify the server");
    if ((cfg->cert_file == NULL) != (cfg->key_file == NULL) ||
        (cfg->cert_pem == NULL) != (cfg->key_pem == NULL))
        return vmseal_fail(EINVAL, "http: client certificate and key go together");
    vmseal_http_client *c = calloc(1, sizeof(*c));
    if (!c)
        return vmseal_fail(ENOMEM, "http: out of memory");
    c->ca_file = dup_or_null(cfg->ca_file);
    c->cert_file = dup_or_null(cfg->cert_file);
    c->key_file = dup_or_null(cfg->key_file);
    c->pinned = dup_or_null(cfg->pinned_pubkey);
    c->ca_pem = cfg->ca_pem;
    c->cert_pem = cfg->cert_pem;
    c->key_pem = cfg->key_pem;
    c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 5000;
    c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    c->max_response = cfg->max_response ? cfg->max_response : (16u << 20);
    c->curl = curl_easy_init();
    if (!c->curl || (cfg->ca_file && !c->ca_file) || (cfg->cert_file && (!c->cert_file || !c->key_file)) ||
        (cfg->pinned_pubkey && !c->pinned)) {
        vmseal_http_client_free(c);
        return vmseal_fail(ENOMEM, "http: out of memory");
    }
    *out = c;
    return 0;
}

int vmseal_http_client_set_token(vmseal_http_client *c, const char *token)
{
    wipe_str(c->auth_header);
    c->auth_header = NULL;
    if (!token)
        return 0;
    if (strpbrk(token, "\r\n"))
        return vmseal_fail(EINVAL, "http: token contains a line break");
    size_t n = strlen(token) + sizeof("Authorization: Bearer ");
    c->auth_header = malloc(n);
    if (!c->auth_header)
        return vmseal_fail(ENOMEM, "http: out of memory");
    snprintf(c->auth_header, n, "Authorization: Bearer %s", token);
    return 0;
}

void vmseal_http_client_set_timeout(vmseal_http_client *c, long timeout_ms)
{
    if (timeout_ms > 0)
        c->timeout_ms = timeout_ms;
}

static int map_curl_error(vmseal_http_client *c, CURLcode rc, const char *method, const char *url,
                          const struct buf *b)
{
    const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return vmseal_fail(ECONNREFUSED, "cannot connect to %s: %s", url, detail);
    case CURLE_OPERATION_TIMEDOUT:
        return vmseal_fail(ETIMEDOUT, "%s %s timed out: %s", method, url, detail);
    case CURLE_COULDNT_RESOLVE_HOST:
        return vmseal_fail(EHOSTUNREACH, "cannot resolve the host of %s: %s", url, detail);
    case CURLE_PEER_FAILED_VERIFICATION:
        return vmseal_fail(EKEYREJECTED, "%s: server certificate not trusted: %s", url, detail);
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return vmseal_fail(EKEYREJECTED, "%s: server key does not match the pinned key", url);
    case CURLE_SSL_CERTPROBLEM:
        return vmseal_fail(EKEYREJECTED, "%s: cannot use our client certificate: %s", url, detail);
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
        return vmseal_fail(EKEYREJECTED, "%s: TLS handshake failed: %s", url, detail);
    case CURLE_WRITE_ERROR:
        if (b->overflow)
            return vmseal_fail(EMSGSIZE, "%s: response larger than %zu bytes", url, c->max_response);
        return vmseal_fail(ENOMEM, "%s: cannot store the response", url);
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
        /* With TLS 1.3 a refused client certificate shows up only here. */
        if (strstr(detail, "alert") || strstr(detail, "certificate"))
            return vmseal_fail(EKEYREJECTED, "%s: the server refused the connection: %s", url, detail);
        return vmseal_fail(ECONNRESET, "%s %s: connection failed: %s", method, url, detail);
    default:
        return vmseal_fail(ECONNRESET, "%s %s failed: %s", method, url, detail);
    }
}

int vmseal_http_call(vmseal_http_client *c, const char *method, const char *url,
                     const json_t *body, long *status, json_t **resp)
{
    if (status)
        *status = 0;
    if (resp)
        *resp = NULL;
    CURL *h = c->curl;
    curl_easy_reset(h);
    c->errbuf[0] = '\0';
    struct buf in = {.max = c->max_response};
    char *payload = NULL;
    size_t payload_len = 0;
    struct curl_slist *hdrs = NULL;
    int rc = 0;

    if (body) {
        payload = json_dumps(body, JSON_COMPACT);
        if (!payload)
            return vmseal_fail(ENOMEM, "http: cannot serialise the request");
        payload_len = strlen(payload);
    }
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (c->auth_header)
        hdrs = curl_slist_append(hdrs, c->auth_header);
    if (!hdrs) {
        rc = vmseal_fail(ENOMEM, "http: out of memory");
        goto out;
    }

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    if (c->cert_file) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
        curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
    }
    if (c->ca_pem) {
        struct curl_blob b = {(void *)c->ca_pem, strlen(c->ca_pem), CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_CAINFO, NULL);
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
    }
    if (c->cert_pem) {
        struct curl_blob cb = {(void *)c->cert_pem, strlen(c->cert_pem), CURL_BLOB_COPY};
        struct curl_blob kb = {(void *)c->key_pem, strlen(c->key_pem), CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cb);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &kb);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (c->pinned)
        curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, c->pinned);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &in);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)payload_len);
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }

    CURLcode cr = curl_easy_perform(h);
    if (cr != CURLE_OK) {
        rc = map_curl_error(c, cr, method, url, &in);
        goto out;
    }
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (status)
        *status = code;
    if (in.len > 0 && resp) {
        json_error_t jerr;
        *resp = json_loadb(in.p, in.len, JSON_REJECT_DUPLICATES, &jerr);
        if (!*resp)
            rc = vmseal_fail(EPROTO, "%s %s: HTTP %ld with a body that is not JSON (%s)", method,
                             url, code, jerr.text);
    }
out:
    curl_slist_free_all(hdrs);
    /* Forget the POSTFIELDS pointer before wiping the buffer. */
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    if (payload) {
        OPENSSL_cleanse(payload, payload_len);
        free(payload);
    }
    buf_wipe(&in);
    return rc;
}

const char *vmseal_http_error_text(const json_t *resp)
{
    const json_t *e = resp ? json_object_get(resp, "error") : NULL;
    const char *s = e ? json_string_value(e) : NULL;
    return s ? s : "no error text in the response";
}
