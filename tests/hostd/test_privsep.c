/* The monitor's end of hostd's privilege separation (hostd/monitor.c,
 * hostd/privsep.c) fed by a test playing a compromised network process:
 * well-formed REQUESTs are answered (several in flight, matched by id);
 * a bad length, an unknown type, an oversized body, a torn or overlong
 * packet, a short header, passed descriptors, a monitor-only type and a
 * malformed REQUEST each drop the link (logged) without crashing, and the
 * monitor answers nothing more. Also: a sealed KEK for another host,
 * provider or custody key does not open in the monitor. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/rand.h>

#include "monitor.h"
#include "privsep.h"

static char datastore[64];
static char last_log[1024];

static void on_log(void *arg, const char *line)
{
    (void)arg;
    snprintf(last_log, sizeof(last_log), "%s", line);
    fprintf(stderr, "# monitor: %s\n", line);
}

typedef struct rig {
    hostd_host *host;
    hostd_monitor *mon;
    ps_chan child;        /* the test's end */
} rig;

static void rig_up(rig *r)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    hostd_host_config hc = {.datastore = datastore, .accel = VMSEAL_ACCEL_TCG,
                             .allowed_subject = "CN=manager", .name = "host-a"};
    assert_int_equal(hostd_host_open(&hc, &r->host), 0);
    hostd_host_set_logger(r->host, on_log, NULL);
    hostd_monitor_config mc = {.host = r->host, .fd = sv[0], .workers = 3, .queue_max = 8,
                               .log = on_log};
    assert_int_equal(hostd_monitor_start(&mc, &r->mon), 0);
    ps_chan_init(&r->child, sv[1]);
}

static void rig_down(rig *r)
{
    hostd_monitor_stop(r->mon);
    hostd_host_close(r->host);
    close(r->child.fd);
    ps_chan_destroy(&r->child);
}

static void request(ps_buf *b, uint64_t id, uint32_t method, const char *path, const char *body)
{
    ps_put_u64(b, id);
    ps_put_u32(b, method);
    ps_put_str(b, path);
    ps_put_str(b, "CN=manager");
    ps_put_str(b, "00");
    ps_put_bytes(b, body, body ? strlen(body) : 0);
}

/* One RESPONSE: its id and status, the JSON parsed. */
static json_t *response(rig *r, uint64_t *id, int *status)
{
    uint32_t type = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(ps_recv(&r->child, &type, &data, &len), 0);
    assert_int_equal(type, PS_RESPONSE);
    ps_rd rd = {.p = data, .len = len};
    *id = ps_get_u64(&rd);
    *status = (int)ps_get_u32(&rd);
    size_t tl = 0;
    const uint8_t *t = ps_get_bytes(&rd, PS_RESPONSE_MAX, &tl);
    assert_int_equal(ps_rd_end(&rd), 0);
    json_t *j = tl ? json_loadb((const char *)t, tl, 0, NULL) : NULL;
    ps_msg_free(data, len);
    return j;
}

/* The monitor dropped us: end of file, link dead, reason logged. */
static void assert_dropped(rig *r, const char *why)
{
    uint32_t type;
    uint8_t *data = NULL;
    size_t len;
    int rc = ps_recv(&r->child, &type, &data, &len);
    ps_msg_free(data, len);
    assert_int_equal(rc, -EPIPE);
    for (int i = 0; i < 100 && hostd_monitor_alive(r->mon); i++)
        usleep(10000);
    assert_false(hostd_monitor_alive(r->mon));
    if (!strstr(hostd_monitor_error(r->mon), why))
        fail_msg("dropped for \"%s\", expected \"%s\"", hostd_monitor_error(r->mon), why);
    assert_non_null(strstr(last_log, "dropping the network process"));
}

static void test_requests(void **state)
{
    (void)state;
    rig r;
    rig_up(&r);
    /* several in flight, answered by id */
    for (uint64_t id = 10; id < 16; id++) {
        ps_buf b = {0};
        request(&b, id, PS_GET, id % 2 ? "/v1/vms" : "/v1/host", NULL);
        assert_int_equal(ps_send(&r.child, PS_REQUEST, &b), 0);
        ps_buf_free(&b);
    }
    unsigned seen = 0;
    for (int i = 0; i < 6; i++) {
        uint64_t id;
        int status;
        json_t *j = response(&r, &id, &status);
        assert_int_equal(status, 200);
        assert_true(id >= 10 && id < 16);
        assert_non_null(json_object_get(j, id % 2 ? "vms" : "custody_key"));
        seen |= 1u << (id - 10);
        json_decref(j);
    }
    assert_int_equal(seen, 0x3f);
    /* the monitor checks paths, bodies and the subject itself */
    ps_buf b = {0};
    request(&b, 20, PS_PUT, "/v1/keys/kek-1", "{\"key\": \"AAAA\"}");
    assert_int_equal(ps_send(&r.child, PS_REQUEST, &b), 0);
    ps_buf_free(&b);
    uint64_t id;
    int status;
    json_decref(response(&r, &id, &status));
    assert_int_equal(id, 20);
    assert_int_equal(status, 400);
    assert_true(hostd_monitor_alive(r.mon));
    rig_down(&r);
}

static void send_raw(rig *r, const void *p, size_t n)
{
    assert_int_equal(send(r->child.fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void test_unknown_type(void **state)
{
    (void)state;
    rig r;
    rig_up(&r);
    uint32_t hdr[2] = {99, 0};
    send_raw(&r, hdr, sizeof(hdr));
    assert_dropped(&r, "unknown message type 99");
    rig_down(&r);
}

static void test_bad_lengths(void **state)
{
    (void)state;
    /* header announces more than a REQUEST may hold */
    rig r;
    rig_up(&r);
    uint32_t hdr[2] = {PS_REQUEST, (uint32_t)ps_max_len(PS_REQUEST) + 1};
    send_raw(&r, hdr, sizeof(hdr));
    assert_dropped(&r, "at most");
    rig_down(&r);

    /* a packet longer than the header said */
    rig_up(&r);
    uint32_t h2[2] = {PS_REQUEST, 16};
    uint8_t junk[40] = {0};
    send_raw(&r, h2, sizeof(h2));
    send_raw(&r, junk, sizeof(junk));
    assert_dropped(&r, "longer than announced");
    rig_down(&r);

    /* a short header */
    rig_up(&r);
    send_raw(&r, junk, 5);
    assert_dropped(&r, "a header of 5 bytes");
    rig_down(&r);

    /* a field length running past the payload */
    rig_up(&r);
    ps_buf b = {0};
    ps_put_u64(&b, 1);
    ps_put_u32(&b, PS_GET);
    ps_put_u32(&b, 5000);   /* path of 5000 bytes that are not there */
    ps_put_bytes(&b, "/v1", 3);
    assert_int_equal(ps_send(&r.child, PS_REQUEST, &b), 0);
    ps_buf_free(&b);
    assert_dropped(&r, "malformed REQUEST");
    rig_down(&r);

    /* trailing bytes after the last field */
    rig_up(&r);
    request(&b, 1, PS_GET, "/v1/host", NULL);
    ps_put_u32(&b, 0);
    assert_int_equal(ps_send(&r.child, PS_REQUEST, &b), 0);
    ps_buf_free(&b);
    assert_dropped(&r, "malformed REQUEST");
    rig_down(&r);

    /* an unknown method, a NUL inside the path */
    rig_up(&r);
    request(&b, 1, 9, "/v1/host", NULL);
    assert_int_equal(ps_send(&r.child, PS_REQUEST, &b), 0);
    ps_buf_free(&b);
    assert_dropped(&r, "unknown method");
    rig_down(&r);
    rig_up(&r);
    ps_put_u64(&b, 1);
    ps_put_u32(&b, PS_GET);
    ps_put_bytes(&b, "/v1/host\0x", 10);
    ps_put_str(&b, "CN=manager");
    ps_put_str(&b, "");
    ps_put_bytes(&b, NULL, 0);
    assert_int_equal(ps_send(&r.child, PS_REQUEST, &b), 0);
    ps_buf_free(&b);
    assert_dropped(&r, "malformed REQUEST");
    rig_down(&r);
}

static void test_oversized_body(void **state)
{
    (void)state;
    rig r;
    rig_up(&r);
    size_t n = PS_BODY_MAX + 1;
    char *body = malloc(n + 1);
    assert_non_null(body);
    memset(body, ' ', n);
    body[n] = '\0';
    ps_buf b = {0};
    request(&b, 7, PS_POST, "/v1/vms", body);
    free(body);
    assert_true(b.len <= ps_max_len(PS_REQUEST));   /* the message fits; the body does not */
    assert_int_equal(ps_send(&r.child, PS_REQUEST, &b), 0);
    ps_buf_free(&b);
    assert_dropped(&r, "malformed REQUEST");
    rig_down(&r);
}

static void test_wrong_direction_and_fds(void **state)
{
    (void)state;
    rig r;
    rig_up(&r);
    ps_buf b = {0};
    ps_put_u64(&b, 1);
    ps_put_u32(&b, 200);
    ps_put_bytes(&b, "{}", 2);
    assert_int_equal(ps_send(&r.child, PS_RESPONSE, &b), 0);
    ps_buf_free(&b);
    assert_dropped(&r, "not expected from the network process");
    rig_down(&r);

    rig_up(&r);
    uint32_t hdr[2] = {PS_READY, 4};
    send_raw(&r, hdr, sizeof(hdr));
    uint32_t port = 443;
    int fd = dup(0);
    char cbuf[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {.iov_base = &port, .iov_len = 4};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof(cbuf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    assert_int_equal(sendmsg(r.child.fd, &mh, MSG_NOSIGNAL), 4);
    close(fd);
    assert_dropped(&r, "descriptors");
    rig_down(&r);
}

/* Console messages from a compromised network process: an open for a VM
 * that is not there, DATA and CLOSE for a console that does not exist are
 * answered or dropped quietly; a malformed OPEN, an empty or oversized
 * DATA, a kind that does not exist and a monitor-only CONSOLE_OPENED drop
 * the link. */
static uint32_t console_answer(rig *r, uint64_t want_id, char *msg, size_t msglen)
{
    uint32_t type = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(ps_recv(&r->child, &type, &data, &len), 0);
    assert_int_equal(type, PS_CONSOLE_OPENED);
    ps_rd rd = {.p = data, .len = len};
    assert_true(ps_get_u64(&rd) == want_id);
    uint32_t status = ps_get_u32(&rd);
    ps_get_str(&rd, msg, msglen, PS_TEXT_MAX);
    assert_int_equal(ps_rd_end(&rd), 0);
    ps_msg_free(data, len);
    return status;
}

static void console_open(ps_buf *b, uint64_t id, uint32_t kind, const char *uuid)
{
    ps_put_u64(b, id);
    ps_put_u32(b, kind);
    ps_put_str(b, uuid);
    ps_put_str(b, "00");
}

static void test_console_messages(void **state)
{
    (void)state;
    rig r;
    rig_up(&r);
    char msg[PS_TEXT_MAX + 1];
    ps_buf b = {0};
    console_open(&b, 7, PS_CONSOLE_SERIAL, "11111111-2222-4333-8444-555555555555");
    assert_int_equal(ps_send(&r.child, PS_CONSOLE_OPEN, &b), 0);
    ps_buf_free(&b);
    assert_int_equal(console_answer(&r, 7, msg, sizeof(msg)), 404);
    /* data and close for consoles that do not exist: dropped, link alive */
    ps_put_u64(&b, 7);
    ps_put_bytes(&b, "ls\r", 3);
    assert_int_equal(ps_send(&r.child, PS_CONSOLE_DATA, &b), 0);
    ps_buf_free(&b);
    ps_put_u64(&b, 8);
    ps_put_str(&b, "bye");
    assert_int_equal(ps_send(&r.child, PS_CONSOLE_CLOSE, &b), 0);
    ps_buf_free(&b);
    console_open(&b, 9, PS_CONSOLE_VNC, "../../etc");
    assert_int_equal(ps_send(&r.child, PS_CONSOLE_OPEN, &b), 0);
    ps_buf_free(&b);
    assert_int_equal(console_answer(&r, 9, msg, sizeof(msg)), 404);
    assert_true(hostd_monitor_alive(r.mon));
    rig_down(&r);

    /* a kind that does not exist */
    rig_up(&r);
    console_open(&b, 1, 3, "x");
    assert_int_equal(ps_send(&r.child, PS_CONSOLE_OPEN, &b), 0);
    ps_buf_free(&b);
    assert_dropped(&r, "malformed CONSOLE_OPEN");
    rig_down(&r);

    /* a uuid over its bound */
    rig_up(&r);
    char longid[PS_UUID_MAX + 2];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    console_open(&b, 1, PS_CONSOLE_SERIAL, longid);
    assert_int_equal(ps_send(&r.child, PS_CONSOLE_OPEN, &b), 0);
    ps_buf_free(&b);
    assert_dropped(&r, "malformed CONSOLE_OPEN");
    rig_down(&r);

    /* empty data */
    rig_up(&r);
    ps_put_u64(&b, 1);
    ps_put_bytes(&b, "", 0);
    assert_int_equal(ps_send(&r.child, PS_CONSOLE_DATA, &b), 0);
    ps_buf_free(&b);
    assert_dropped(&r, "malformed CONSOLE_DATA");
    rig_down(&r);

    /* data over the chunk bound: refused by its header already */
    rig_up(&r);
    uint32_t hdr[2] = {PS_CONSOLE_DATA, (uint32_t)ps_max_len(PS_CONSOLE_DATA) + 1};
    send_raw(&r, hdr, sizeof(hdr));
    assert_dropped(&r, "(at most 16396)");
    rig_down(&r);

    /* the monitor's own answer type coming back */
    rig_up(&r);
    ps_put_u64(&b, 1);
    ps_put_u32(&b, 200);
    ps_put_str(&b, "");
    assert_int_equal(ps_send(&r.child, PS_CONSOLE_OPENED, &b), 0);
    ps_buf_free(&b);
    assert_dropped(&r, "not expected from the network process");
    rig_down(&r);
}

static void test_sealed_elsewhere(void **state)
{
    (void)state;
    rig r;
    rig_up(&r);
    uint8_t pub[VMSEAL_KD_PUB_LEN], blob[VMSEAL_KD_BLOB_LEN];
    hostd_host_custody_public(r.host, pub);
    vmseal_secret *kek = NULL;
    assert_int_equal(vmseal_secret_random(32, &kek), 0);
    /* another host, another provider, another KEK id: refused */
    assert_int_equal(vmseal_kd_seal(pub, "host-b", "kek-1", "vmseal", kek, blob), 0);
    assert_int_equal(hostd_host_put_sealed(r.host, "kek-1", "vmseal", blob, sizeof(blob)),
                     -EBADMSG);
    assert_int_equal(vmseal_kd_seal(pub, "host-a", "kek-1", "other", kek, blob), 0);
    assert_int_equal(hostd_host_put_sealed(r.host, "kek-1", "vmseal", blob, sizeof(blob)),
                     -EBADMSG);
    assert_int_equal(hostd_host_put_sealed(r.host, "kek-2", "other", blob, sizeof(blob)),
                     -EBADMSG);
    /* another host's custody key */
    vmseal_kd_keypair *other = NULL;
    assert_int_equal(vmseal_kd_keypair_new(&other), 0);
    uint8_t opub[VMSEAL_KD_PUB_LEN];
    vmseal_kd_public(other, opub);
    vmseal_kd_keypair_free(other);
    assert_int_equal(vmseal_kd_seal(opub, "host-a", "kek-1", "vmseal", kek, blob), 0);
    assert_int_equal(hostd_host_put_sealed(r.host, "kek-1", "vmseal", blob, sizeof(blob)),
                     -EBADMSG);
    /* the right one; and through a REQUEST as the manager sends it */
    assert_int_equal(vmseal_kd_seal(pub, "host-a", "kek-1", "other", kek, blob), 0);
    char b64[200], body[300];
    assert_int_equal(vmseal_kd_b64(blob, sizeof(blob), b64, sizeof(b64)), 0);
    snprintf(body, sizeof(body), "{\"sealed_key\": \"%s\", \"provider\": \"vmseal\"}", b64);
    ps_buf b = {0};
    request(&b, 3, PS_PUT, "/v1/keys/kek-1", body);
    assert_int_equal(ps_send(&r.child, PS_REQUEST, &b), 0);
    ps_buf_free(&b);
    uint64_t id;
    int status;
    json_decref(response(&r, &id, &status));
    assert_int_equal(status, 422);
    snprintf(body, sizeof(body), "{\"sealed_key\": \"%s\", \"provider\": \"other\"}", b64);
    request(&b, 4, PS_PUT, "/v1/keys/kek-1", body);
    assert_int_equal(ps_send(&r.child, PS_REQUEST, &b), 0);
    ps_buf_free(&b);
    json_decref(response(&r, &id, &status));
    assert_int_equal(status, 200);
    vmseal_secret_free(kek);
    rig_down(&r);
}

int main(void)
{
    snprintf(datastore, sizeof(datastore), "/tmp/test_privsep.XXXXXX");
    if (!mkdtemp(datastore))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_bad_lengths),
        cmocka_unit_test(test_oversized_body),
        cmocka_unit_test(test_wrong_direction_and_fds),
        cmocka_unit_test(test_sealed_elsewhere),
        cmocka_unit_test(test_console_messages),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(datastore);
    return rc;
}
