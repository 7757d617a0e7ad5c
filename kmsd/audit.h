/* vmseal-kmsd — audit trail: one line per KMIP operation
 *   TIME audit peer=ADDR identity="SUBJECT" op=Get uid=7 result=Success [reason=...]
 * Never key bytes. Written to the audit file (O_APPEND, 0600) or stderr. */
#ifndef KMSD_AUDIT_H
#define KMSD_AUDIT_H

int kmsd_audit_open(const char *path);
void kmsd_audit_close(void);
void kmsd_audit(const char *peer, const char *identity, const char *op, const char *uid,
                const char *result, const char *reason);

#endif
