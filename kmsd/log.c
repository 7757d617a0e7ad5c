/* vmseal-kmsd — diagnostic log: the shared logger, configured from
 * kmsd.conf (log_level, log_output, log_file). */
#include <vmseal/log.h>

#include "log.h"

void kmsd_timestamp(char out[32])
{
    vmseal_log_timestamp(out, 32);
}

int kmsd_log_open(const char *path, int level, unsigned outputs)
{
    vmseal_log_config c = {
        .program = "vmseal-kmsd",
        .level = (vmseal_log_level)level,
        .outputs = (outputs ? outputs : VMSEAL_LOG_STDERR) | (path && *path ? VMSEAL_LOG_FILE : 0),
        .file = path,
    };
    return vmseal_log_open(&c);
}

void kmsd_log_close(void)
{
    vmseal_log_close();
}
