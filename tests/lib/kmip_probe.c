/* A legitimate KMIP client for test_abuse.sh, with the repo's KMIP client
 * library: COUNT times, every INTERVAL_MS, a fresh connection (TCP + TLS
 * with a client certificate) and a Query; prints the time of each and exits
 * 1 when one failed or took longer than MAX_MS.
 *
 *   kmip_probe PORT CA CERT KEY COUNT INTERVAL_MS MAX_MS
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <vmseal/kmip_client.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: kmip_probe PORT CA CERT KEY COUNT INTERVAL_MS MAX_MS\n");
        return 2;
    }
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%s", argv[1]);
    const char *servers[] = {server};
    int count = atoi(argv[5]), interval = atoi(argv[6]);
    double max_ms = atof(argv[7]), worst = 0;
    int bad = 0;
    for (int i = 0; i < count; i++) {
        vmseal_kmip_client_config cfg = {
            .servers = servers,
            .n_servers = 1,
            .tls = {.cert_file = argv[3], .key_file = argv[4], .ca_file = argv[2]},
            .connect_timeout_ms = 3000,
            .io_timeout_ms = 3000,
            .version = {1, 2},
        };
        double t0 = now_ms();
        vmseal_kmip_client *c = NULL;
        vmseal_kmip_server_info info;
        int rc = vmseal_kmip_client_new(&cfg, &c);
        if (rc == 0)
            rc = vmseal_kmip_query(c, &info);
        double ms = now_ms() - t0;
        vmseal_kmip_client_free(c);
        if (rc < 0) {
            printf("kmip probe %d: failed after %.0f ms: %s\n", i, ms, vmseal_last_error());
            bad++;
        } else {
            printf("kmip probe %d: Query answered in %.1f ms (%zu operations, vendor %s)\n", i, ms,
                   info.n_operations, info.vendor);
            if (ms > max_ms)
                bad++;
        }
        if (ms > worst)
            worst = ms;
        fflush(stdout);
        if (i + 1 < count)
            usleep((useconds_t)interval * 1000);
    }
    printf("kmip probes: %d, worst %.1f ms, %d failed or slower than %.0f ms\n", count, worst, bad,
           max_ms);
    return bad ? 1 : 0;
}
