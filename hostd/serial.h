/* vmseal-hostd — the guest's serial console log.
 *
 * VM without encryption: QEMU appends to <home>/serial.log, which hostd
 * opens for it (hostd_console_open_plain: openat in the home folder,
 * O_NOFOLLOW, created mode 0600, a regular file with no other hard link)
 * and hands over as a file descriptor. Nothing follows a planted symlink.
 *
 * Encrypted VM: nothing of the console is ever written in clear. QEMU
 * serves the console on <home>/serial.sock; hostd reads it in a thread and
 * appends what arrives — at the latest VMSEAL_CONSOLE_FLUSH_MS after it
 * arrived, or once VMSEAL_CONSOLE_FLUSH_BYTES are pending — as records of
 * the sealed log <home>/serial-<seq>.vmslog (docs/formats.md, "Sealed log")
 * under the VM's log key (HKDF of the per-VM secret, vmseal_slog_key). One
 * segment per power-on (or re-attach after a hostd restart), rotated after
 * VMSEAL_CONSOLE_SEGMENT_BYTES; the newest VMSEAL_CONSOLE_KEEP are kept.
 * Starting a console closes a segment a previous hostd left unfinished
 * (cutting back a torn last record) and seals a clear serial.log found in
 * the folder (left from before the VM was encrypted), then removes it.
 *
 * The log key lives in a vmseal_secret; the console text is held in
 * memory that is wiped when freed, and never logged. Notes about the log
 * itself (a segment closed late, damage found) go to the note callback
 * (vm.log).
 */
#ifndef VMSEAL_HOSTD_SERIAL_H
#define VMSEAL_HOSTD_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

#define VMSEAL_CONSOLE_BASE "serial"
#define VMSEAL_CONSOLE_PLAIN "serial.log"
#define VMSEAL_CONSOLE_SOCKET "serial.sock"
#define VMSEAL_CONSOLE_FLUSH_MS 1000
#define VMSEAL_CONSOLE_FLUSH_BYTES (16u << 10)
#define VMSEAL_CONSOLE_SEGMENT_BYTES (1u << 20)
#define VMSEAL_CONSOLE_KEEP 8
#define VMSEAL_CONSOLE_PENDING_MAX (1u << 20)   /* buffered before a key is there */
#define VMSEAL_CONSOLE_TAIL_DEFAULT (64u << 10)
#define VMSEAL_CONSOLE_TAIL_MAX (1u << 20)

typedef void (*hostd_console_note)(void *arg, const char *line);

typedef struct hostd_console hostd_console;

/* The plain log for QEMU (VM without encryption): a file descriptor open
 * for appending, or -errno (-ELOOP: serial.log is a symbolic link; -EPROTO:
 * not a regular file, or hard-linked elsewhere). */
int hostd_console_open_plain(const char *home);

/* A console for an encrypted VM. log_key (taken; NULL: text is buffered in
 * memory, up to VMSEAL_CONSOLE_PENDING_MAX, until hostd_console_set_key).
 * With a key the folder is prepared at once: an unfinished segment closed,
 * a clear serial.log sealed and removed, a new segment made; a failure
 * (e.g. a symlink among the segments: -ELOOP) is returned. */
int hostd_console_new(const char *home, const char *uuid, vmseal_secret *log_key,
                       hostd_console_note note, void *note_arg,
                       hostd_console **out) VMSEAL_MUST_CHECK;

/* A VM without encryption: QEMU appends the console to serial.log itself
 * (chardev logfile) and also serves serial.sock; this console only reads
 * the socket for the interactive consoles (hostd_console_set_output) and
 * writes their keystrokes. It has no key and writes nothing. */
int hostd_console_new_passthrough(const char *home, const char *uuid, hostd_console_note note,
                                   void *note_arg, hostd_console **out) VMSEAL_MUST_CHECK;

/* Start reading the connected console socket (taken) in a thread. */
int hostd_console_attach(hostd_console *c, int sock_fd) VMSEAL_MUST_CHECK;

/* Give the key to a console made without one (takes log_key); prepares the
 * folder and writes what was buffered. */
int hostd_console_set_key(hostd_console *c, vmseal_secret *log_key);
int hostd_console_has_key(hostd_console *c);

/* Interactive consoles (hostd/console_mux.c): the log thread stays the
 * only reader of serial.sock and hands every chunk it read, after adding
 * it to the log, to the output hook (set before hostd_console_attach; it
 * must not block), and finally (len 0) when the console ends. */
typedef void (*hostd_console_output)(void *arg, const uint8_t *data, size_t len);
void hostd_console_set_output(hostd_console *c, hostd_console_output fn, void *arg);

/* Keystrokes for the guest: written to serial.sock, waiting at most
 * timeout_ms for QEMU to take them (-ETIMEDOUT: the rest is dropped). */
int hostd_console_input(hostd_console *c, const uint8_t *data, size_t len, int timeout_ms)
    VMSEAL_MUST_CHECK;

/* Read what is readable now, seal it, close the segment (end record), stop
 * the thread, free. QEMU may keep running (it waits for the next reader). */
void hostd_console_free(hostd_console *c);

/* The last `tail` bytes of the log and its total length (every byte ever
 * written, including rotated-away segments). *text is malloc'd (free with
 * hostd_console_text_free), not NUL-terminated, possibly empty. */
int hostd_console_read(hostd_console *c, size_t tail, uint8_t **text, size_t *len,
                        uint64_t *total) VMSEAL_MUST_CHECK;

/* The same without a console (VM off): the sealed log under log_key, every
 * segment must be closed. */
int hostd_console_read_sealed(const char *home, const char *uuid, const vmseal_secret *log_key,
                               size_t tail, uint8_t **text, size_t *len,
                               uint64_t *total) VMSEAL_MUST_CHECK;

/* The plain serial.log (O_NOFOLLOW); a missing file is an empty log. */
int hostd_console_read_plain(const char *home, size_t tail, uint8_t **text, size_t *len,
                              uint64_t *total) VMSEAL_MUST_CHECK;

/* Seal <home>/serial.log into the sealed log and remove it (encrypting a
 * VM). 0 also when there is none. */
int hostd_console_seal_plain(const char *home, const char *uuid, const vmseal_secret *log_key,
                              hostd_console_note note, void *note_arg) VMSEAL_MUST_CHECK;

/* Append the sealed log to <home>/serial.log in clear and remove the
 * segments (decrypting a VM). A damaged log is exported up to the damage,
 * noted, and removed all the same (its key is about to go). */
int hostd_console_unseal_to_plain(const char *home, const char *uuid,
                                   const vmseal_secret *log_key, hostd_console_note note,
                                   void *note_arg) VMSEAL_MUST_CHECK;

/* Console bytes as JSON-safe UTF-8 text: invalid sequences and NUL become
 * U+FFFD; when cut (the log goes on before it) a split character at the
 * start is dropped. Returns malloc'd NUL-terminated text (NULL: out of
 * memory); *out_len its length. */
char *hostd_console_utf8(const uint8_t *buf, size_t len, int cut, size_t *out_len);

/* Wipe and free console text. */
void hostd_console_text_free(void *p, size_t len);

#endif
