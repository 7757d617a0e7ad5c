/* vmseal — KMIP 1.0–1.4 constants: TTLV item types, tags, enumerations,
 * bit masks and the standard attribute names.
 *
 * Tag values follow the KMIP 1.4 specification, section 9.1.3.1 (tag table);
 * every tag that appears in the OASIS KMIP 1.1 test cases was cross-checked
 * against the "Tag: Name (0x42xxxx)" lines of that document. Tags
 * 0x540000–0x54FFFF are vendor extensions. Names for logging come from
 * vmseal_kmip_tag_name() (include/vmseal/kmip.h).
 */
#ifndef VMSEAL_KMIP_TAGS_H
#define VMSEAL_KMIP_TAGS_H

/* TTLV item types (KMIP 1.4 §9.1.1.2). */
typedef enum vmseal_ttlv_type {
    VMSEAL_TTLV_STRUCTURE = 0x01,
    VMSEAL_TTLV_INTEGER = 0x02,      /* signed 32-bit */
    VMSEAL_TTLV_LONG = 0x03,         /* signed 64-bit */
    VMSEAL_TTLV_BIGINT = 0x04,       /* two's complement, big-endian, multiple of 8 bytes */
    VMSEAL_TTLV_ENUM = 0x05,         /* unsigned 32-bit */
    VMSEAL_TTLV_BOOL = 0x06,         /* 64-bit, 0 or 1 */
    VMSEAL_TTLV_TEXT = 0x07,         /* UTF-8, no NUL */
    VMSEAL_TTLV_BYTES = 0x08,
    VMSEAL_TTLV_DATETIME = 0x09,     /* signed 64-bit POSIX seconds */
    VMSEAL_TTLV_INTERVAL = 0x0A,     /* unsigned 32-bit seconds */
} vmseal_ttlv_type;

/* Tags (KMIP 1.0–1.4). */
enum vmseal_kmip_tag {
    VMSEAL_KMIP_TAG_ACTIVATION_DATE                          = 0x420001,
    VMSEAL_KMIP_TAG_APPLICATION_DATA                         = 0x420002,
    VMSEAL_KMIP_TAG_APPLICATION_NAMESPACE                    = 0x420003,
    VMSEAL_KMIP_TAG_APPLICATION_SPECIFIC_INFORMATION         = 0x420004,
    VMSEAL_KMIP_TAG_ARCHIVE_DATE                             = 0x420005,
    VMSEAL_KMIP_TAG_ASYNCHRONOUS_CORRELATION_VALUE           = 0x420006,
    VMSEAL_KMIP_TAG_ASYNCHRONOUS_INDICATOR                   = 0x420007,
    VMSEAL_KMIP_TAG_ATTRIBUTE                                = 0x420008,
    VMSEAL_KMIP_TAG_ATTRIBUTE_INDEX                          = 0x420009,
    VMSEAL_KMIP_TAG_ATTRIBUTE_NAME                           = 0x42000A,
    VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE                          = 0x42000B,
    VMSEAL_KMIP_TAG_AUTHENTICATION                           = 0x42000C,
    VMSEAL_KMIP_TAG_BATCH_COUNT                              = 0x42000D,
    VMSEAL_KMIP_TAG_BATCH_ERROR_CONTINUATION_OPTION          = 0x42000E,
    VMSEAL_KMIP_TAG_BATCH_ITEM                               = 0x42000F,
    VMSEAL_KMIP_TAG_BATCH_ORDER_OPTION                       = 0x420010,
    VMSEAL_KMIP_TAG_BLOCK_CIPHER_MODE                        = 0x420011,
    VMSEAL_KMIP_TAG_CANCELLATION_RESULT                      = 0x420012,
    VMSEAL_KMIP_TAG_CERTIFICATE                              = 0x420013,
    VMSEAL_KMIP_TAG_CERTIFICATE_IDENTIFIER                   = 0x420014,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER                       = 0x420015,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_ALTERNATIVE_NAME      = 0x420016,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_DISTINGUISHED_NAME    = 0x420017,
    VMSEAL_KMIP_TAG_CERTIFICATE_REQUEST                      = 0x420018,
    VMSEAL_KMIP_TAG_CERTIFICATE_REQUEST_TYPE                 = 0x420019,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT                      = 0x42001A,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_ALTERNATIVE_NAME     = 0x42001B,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_DISTINGUISHED_NAME   = 0x42001C,
    VMSEAL_KMIP_TAG_CERTIFICATE_TYPE                         = 0x42001D,
    VMSEAL_KMIP_TAG_CERTIFICATE_VALUE                        = 0x42001E,
    VMSEAL_KMIP_TAG_COMMON_TEMPLATE_ATTRIBUTE                = 0x42001F,
    VMSEAL_KMIP_TAG_COMPROMISE_DATE                          = 0x420020,
    VMSEAL_KMIP_TAG_COMPROMISE_OCCURRENCE_DATE               = 0x420021,
    VMSEAL_KMIP_TAG_CONTACT_INFORMATION                      = 0x420022,
    VMSEAL_KMIP_TAG_CREDENTIAL                               = 0x420023,
    VMSEAL_KMIP_TAG_CREDENTIAL_TYPE                          = 0x420024,
    VMSEAL_KMIP_TAG_CREDENTIAL_VALUE                         = 0x420025,
    VMSEAL_KMIP_TAG_CRITICALITY_INDICATOR                    = 0x420026,
    VMSEAL_KMIP_TAG_CRT_COEFFICIENT                          = 0x420027,
    VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM                  = 0x420028,
    VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_DOMAIN_PARAMETERS          = 0x420029,
    VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_LENGTH                     = 0x42002A,
    VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_PARAMETERS                 = 0x42002B,
    VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_USAGE_MASK                 = 0x42002C,
    VMSEAL_KMIP_TAG_CUSTOM_ATTRIBUTE                         = 0x42002D,
    VMSEAL_KMIP_TAG_D                                        = 0x42002E,
    VMSEAL_KMIP_TAG_DEACTIVATION_DATE                        = 0x42002F,
    VMSEAL_KMIP_TAG_DERIVATION_DATA                          = 0x420030,
    VMSEAL_KMIP_TAG_DERIVATION_METHOD                        = 0x420031,
    VMSEAL_KMIP_TAG_DERIVATION_PARAMETERS                    = 0x420032,
    VMSEAL_KMIP_TAG_DESTROY_DATE                             = 0x420033,
    VMSEAL_KMIP_TAG_DIGEST                                   = 0x420034,
    VMSEAL_KMIP_TAG_DIGEST_VALUE                             = 0x420035,
    VMSEAL_KMIP_TAG_ENCRYPTION_KEY_INFORMATION               = 0x420036,
    VMSEAL_KMIP_TAG_G                                        = 0x420037,
    VMSEAL_KMIP_TAG_HASHING_ALGORITHM                        = 0x420038,
    VMSEAL_KMIP_TAG_INITIAL_DATE                             = 0x420039,
    VMSEAL_KMIP_TAG_INITIALIZATION_VECTOR                    = 0x42003A,
    VMSEAL_KMIP_TAG_ISSUER                                   = 0x42003B,
    VMSEAL_KMIP_TAG_ITERATION_COUNT                          = 0x42003C,
    VMSEAL_KMIP_TAG_IV_COUNTER_NONCE                         = 0x42003D,
    VMSEAL_KMIP_TAG_J                                        = 0x42003E,
    VMSEAL_KMIP_TAG_KEY                                      = 0x42003F,
    VMSEAL_KMIP_TAG_KEY_BLOCK                                = 0x420040,
    VMSEAL_KMIP_TAG_KEY_COMPRESSION_TYPE                     = 0x420041,
    VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE                          = 0x420042,
    VMSEAL_KMIP_TAG_KEY_MATERIAL                             = 0x420043,
    VMSEAL_KMIP_TAG_KEY_PART_IDENTIFIER                      = 0x420044,
    VMSEAL_KMIP_TAG_KEY_VALUE                                = 0x420045,
    VMSEAL_KMIP_TAG_KEY_WRAPPING_DATA                        = 0x420046,
    VMSEAL_KMIP_TAG_KEY_WRAPPING_SPECIFICATION               = 0x420047,
    VMSEAL_KMIP_TAG_LAST_CHANGE_DATE                         = 0x420048,
    VMSEAL_KMIP_TAG_LEASE_TIME                               = 0x420049,
    VMSEAL_KMIP_TAG_LINK                                     = 0x42004A,
    VMSEAL_KMIP_TAG_LINK_TYPE                                = 0x42004B,
    VMSEAL_KMIP_TAG_LINKED_OBJECT_IDENTIFIER                 = 0x42004C,
    VMSEAL_KMIP_TAG_MAC_SIGNATURE                            = 0x42004D,
    VMSEAL_KMIP_TAG_MAC_SIGNATURE_KEY_INFORMATION            = 0x42004E,
    VMSEAL_KMIP_TAG_MAXIMUM_ITEMS                            = 0x42004F,
    VMSEAL_KMIP_TAG_MAXIMUM_RESPONSE_SIZE                    = 0x420050,
    VMSEAL_KMIP_TAG_MESSAGE_EXTENSION                        = 0x420051,
    VMSEAL_KMIP_TAG_MODULUS                                  = 0x420052,
    VMSEAL_KMIP_TAG_NAME                                     = 0x420053,
    VMSEAL_KMIP_TAG_NAME_TYPE                                = 0x420054,
    VMSEAL_KMIP_TAG_NAME_VALUE                               = 0x420055,
    VMSEAL_KMIP_TAG_OBJECT_GROUP                             = 0x420056,
    VMSEAL_KMIP_TAG_OBJECT_TYPE                              = 0x420057,
    VMSEAL_KMIP_TAG_OFFSET                                   = 0x420058,
    VMSEAL_KMIP_TAG_OPAQUE_DATA_TYPE                         = 0x420059,
    VMSEAL_KMIP_TAG_OPAQUE_DATA_VALUE                        = 0x42005A,
    VMSEAL_KMIP_TAG_OPAQUE_OBJECT                            = 0x42005B,
    VMSEAL_KMIP_TAG_OPERATION                                = 0x42005C,
    VMSEAL_KMIP_TAG_OPERATION_POLICY_NAME                    = 0x42005D,
    VMSEAL_KMIP_TAG_P                                        = 0x42005E,
    VMSEAL_KMIP_TAG_PADDING_METHOD                           = 0x42005F,
    VMSEAL_KMIP_TAG_PRIME_EXPONENT_P                         = 0x420060,
    VMSEAL_KMIP_TAG_PRIME_EXPONENT_Q                         = 0x420061,
    VMSEAL_KMIP_TAG_PRIME_FIELD_SIZE                         = 0x420062,
    VMSEAL_KMIP_TAG_PRIVATE_EXPONENT                         = 0x420063,
    VMSEAL_KMIP_TAG_PRIVATE_KEY                              = 0x420064,
    VMSEAL_KMIP_TAG_PRIVATE_KEY_TEMPLATE_ATTRIBUTE           = 0x420065,
    VMSEAL_KMIP_TAG_PRIVATE_KEY_UNIQUE_IDENTIFIER            = 0x420066,
    VMSEAL_KMIP_TAG_PROCESS_START_DATE                       = 0x420067,
    VMSEAL_KMIP_TAG_PROTECT_STOP_DATE                        = 0x420068,
    VMSEAL_KMIP_TAG_PROTOCOL_VERSION                         = 0x420069,
    VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR                   = 0x42006A,
    VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR                   = 0x42006B,
    VMSEAL_KMIP_TAG_PUBLIC_EXPONENT                          = 0x42006C,
    VMSEAL_KMIP_TAG_PUBLIC_KEY                               = 0x42006D,
    VMSEAL_KMIP_TAG_PUBLIC_KEY_TEMPLATE_ATTRIBUTE            = 0x42006E,
    VMSEAL_KMIP_TAG_PUBLIC_KEY_UNIQUE_IDENTIFIER             = 0x42006F,
    VMSEAL_KMIP_TAG_PUT_FUNCTION                             = 0x420070,
    VMSEAL_KMIP_TAG_Q                                        = 0x420071,
    VMSEAL_KMIP_TAG_Q_STRING                                 = 0x420072,
    VMSEAL_KMIP_TAG_QLENGTH                                  = 0x420073,
    VMSEAL_KMIP_TAG_QUERY_FUNCTION                           = 0x420074,
    VMSEAL_KMIP_TAG_RECOMMENDED_CURVE                        = 0x420075,
    VMSEAL_KMIP_TAG_REPLACED_UNIQUE_IDENTIFIER               = 0x420076,
    VMSEAL_KMIP_TAG_REQUEST_HEADER                           = 0x420077,
    VMSEAL_KMIP_TAG_REQUEST_MESSAGE                          = 0x420078,
    VMSEAL_KMIP_TAG_REQUEST_PAYLOAD                          = 0x420079,
    VMSEAL_KMIP_TAG_RESPONSE_HEADER                          = 0x42007A,
    VMSEAL_KMIP_TAG_RESPONSE_MESSAGE                         = 0x42007B,
    VMSEAL_KMIP_TAG_RESPONSE_PAYLOAD                         = 0x42007C,
    VMSEAL_KMIP_TAG_RESULT_MESSAGE                           = 0x42007D,
    VMSEAL_KMIP_TAG_RESULT_REASON                            = 0x42007E,
    VMSEAL_KMIP_TAG_RESULT_STATUS                            = 0x42007F,
    VMSEAL_KMIP_TAG_REVOCATION_MESSAGE                       = 0x420080,
    VMSEAL_KMIP_TAG_REVOCATION_REASON                        = 0x420081,
    VMSEAL_KMIP_TAG_REVOCATION_REASON_CODE                   = 0x420082,
    VMSEAL_KMIP_TAG_KEY_ROLE_TYPE                            = 0x420083,
    VMSEAL_KMIP_TAG_SALT                                     = 0x420084,
    VMSEAL_KMIP_TAG_SECRET_DATA                              = 0x420085,
    VMSEAL_KMIP_TAG_SECRET_DATA_TYPE                         = 0x420086,
    VMSEAL_KMIP_TAG_SERIAL_NUMBER                            = 0x420087,
    VMSEAL_KMIP_TAG_SERVER_INFORMATION                       = 0x420088,
    VMSEAL_KMIP_TAG_SPLIT_KEY                                = 0x420089,
    VMSEAL_KMIP_TAG_SPLIT_KEY_METHOD                         = 0x42008A,
    VMSEAL_KMIP_TAG_SPLIT_KEY_PARTS                          = 0x42008B,
    VMSEAL_KMIP_TAG_SPLIT_KEY_THRESHOLD                      = 0x42008C,
    VMSEAL_KMIP_TAG_STATE                                    = 0x42008D,
    VMSEAL_KMIP_TAG_STORAGE_STATUS_MASK                      = 0x42008E,
    VMSEAL_KMIP_TAG_SYMMETRIC_KEY                            = 0x42008F,
    VMSEAL_KMIP_TAG_TEMPLATE                                 = 0x420090,
    VMSEAL_KMIP_TAG_TEMPLATE_ATTRIBUTE                       = 0x420091,
    VMSEAL_KMIP_TAG_TIME_STAMP                               = 0x420092,
    VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID                     = 0x420093,
    VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER                        = 0x420094,
    VMSEAL_KMIP_TAG_USAGE_LIMITS                             = 0x420095,
    VMSEAL_KMIP_TAG_USAGE_LIMITS_COUNT                       = 0x420096,
    VMSEAL_KMIP_TAG_USAGE_LIMITS_TOTAL                       = 0x420097,
    VMSEAL_KMIP_TAG_USAGE_LIMITS_UNIT                        = 0x420098,
    VMSEAL_KMIP_TAG_USERNAME                                 = 0x420099,
    VMSEAL_KMIP_TAG_VALIDITY_DATE                            = 0x42009A,
    VMSEAL_KMIP_TAG_VALIDITY_INDICATOR                       = 0x42009B,
    VMSEAL_KMIP_TAG_VENDOR_EXTENSION                         = 0x42009C,
    VMSEAL_KMIP_TAG_VENDOR_IDENTIFICATION                    = 0x42009D,
    VMSEAL_KMIP_TAG_WRAPPING_METHOD                          = 0x42009E,
    VMSEAL_KMIP_TAG_X                                        = 0x42009F,
    VMSEAL_KMIP_TAG_Y                                        = 0x4200A0,
    VMSEAL_KMIP_TAG_PASSWORD                                 = 0x4200A1,
    VMSEAL_KMIP_TAG_DEVICE_IDENTIFIER                        = 0x4200A2,
    VMSEAL_KMIP_TAG_ENCODING_OPTION                          = 0x4200A3,
    VMSEAL_KMIP_TAG_EXTENSION_INFORMATION                    = 0x4200A4,
    VMSEAL_KMIP_TAG_EXTENSION_NAME                           = 0x4200A5,
    VMSEAL_KMIP_TAG_EXTENSION_TAG                            = 0x4200A6,
    VMSEAL_KMIP_TAG_EXTENSION_TYPE                           = 0x4200A7,
    VMSEAL_KMIP_TAG_FRESH                                    = 0x4200A8,
    VMSEAL_KMIP_TAG_MACHINE_IDENTIFIER                       = 0x4200A9,
    VMSEAL_KMIP_TAG_MEDIA_IDENTIFIER                         = 0x4200AA,
    VMSEAL_KMIP_TAG_NETWORK_IDENTIFIER                       = 0x4200AB,
    VMSEAL_KMIP_TAG_OBJECT_GROUP_MEMBER                      = 0x4200AC,
    VMSEAL_KMIP_TAG_CERTIFICATE_LENGTH                       = 0x4200AD,
    VMSEAL_KMIP_TAG_DIGITAL_SIGNATURE_ALGORITHM              = 0x4200AE,
    VMSEAL_KMIP_TAG_CERTIFICATE_SERIAL_NUMBER                = 0x4200AF,
    VMSEAL_KMIP_TAG_DEVICE_SERIAL_NUMBER                     = 0x4200B0,
    VMSEAL_KMIP_TAG_ISSUER_ALTERNATIVE_NAME                  = 0x4200B1,
    VMSEAL_KMIP_TAG_ISSUER_DISTINGUISHED_NAME                = 0x4200B2,
    VMSEAL_KMIP_TAG_SUBJECT_ALTERNATIVE_NAME                 = 0x4200B3,
    VMSEAL_KMIP_TAG_SUBJECT_DISTINGUISHED_NAME               = 0x4200B4,
    VMSEAL_KMIP_TAG_X_509_CERTIFICATE_IDENTIFIER             = 0x4200B5,
    VMSEAL_KMIP_TAG_X_509_CERTIFICATE_ISSUER                 = 0x4200B6,
    VMSEAL_KMIP_TAG_X_509_CERTIFICATE_SUBJECT                = 0x4200B7,
    VMSEAL_KMIP_TAG_KEY_VALUE_LOCATION                       = 0x4200B8,
    VMSEAL_KMIP_TAG_KEY_VALUE_LOCATION_VALUE                 = 0x4200B9,
    VMSEAL_KMIP_TAG_KEY_VALUE_LOCATION_TYPE                  = 0x4200BA,
    VMSEAL_KMIP_TAG_KEY_VALUE_PRESENT                        = 0x4200BB,
    VMSEAL_KMIP_TAG_ORIGINAL_CREATION_DATE                   = 0x4200BC,
    VMSEAL_KMIP_TAG_PGP_KEY                                  = 0x4200BD,
    VMSEAL_KMIP_TAG_PGP_KEY_VERSION                          = 0x4200BE,
    VMSEAL_KMIP_TAG_ALTERNATIVE_NAME                         = 0x4200BF,
    VMSEAL_KMIP_TAG_ALTERNATIVE_NAME_VALUE                   = 0x4200C0,
    VMSEAL_KMIP_TAG_ALTERNATIVE_NAME_TYPE                    = 0x4200C1,
    VMSEAL_KMIP_TAG_DATA                                     = 0x4200C2,
    VMSEAL_KMIP_TAG_SIGNATURE_DATA                           = 0x4200C3,
    VMSEAL_KMIP_TAG_DATA_LENGTH                              = 0x4200C4,
    VMSEAL_KMIP_TAG_RANDOM_IV                                = 0x4200C5,
    VMSEAL_KMIP_TAG_MAC_DATA                                 = 0x4200C6,
    VMSEAL_KMIP_TAG_ATTESTATION_TYPE                         = 0x4200C7,
    VMSEAL_KMIP_TAG_NONCE                                    = 0x4200C8,
    VMSEAL_KMIP_TAG_NONCE_ID                                 = 0x4200C9,
    VMSEAL_KMIP_TAG_NONCE_VALUE                              = 0x4200CA,
    VMSEAL_KMIP_TAG_ATTESTATION_MEASUREMENT                  = 0x4200CB,
    VMSEAL_KMIP_TAG_ATTESTATION_ASSERTION                    = 0x4200CC,
    VMSEAL_KMIP_TAG_IV_LENGTH                                = 0x4200CD,
    VMSEAL_KMIP_TAG_TAG_LENGTH                               = 0x4200CE,
    VMSEAL_KMIP_TAG_FIXED_FIELD_LENGTH                       = 0x4200CF,
    VMSEAL_KMIP_TAG_COUNTER_LENGTH                           = 0x4200D0,
    VMSEAL_KMIP_TAG_INITIAL_COUNTER_VALUE                    = 0x4200D1,
    VMSEAL_KMIP_TAG_INVOCATION_FIELD_LENGTH                  = 0x4200D2,
    VMSEAL_KMIP_TAG_ATTESTATION_CAPABLE_INDICATOR            = 0x4200D3,
    VMSEAL_KMIP_TAG_OFFSET_ITEMS                             = 0x4200D4,
    VMSEAL_KMIP_TAG_LOCATED_ITEMS                            = 0x4200D5,
    VMSEAL_KMIP_TAG_CORRELATION_VALUE                        = 0x4200D6,
    VMSEAL_KMIP_TAG_INIT_INDICATOR                           = 0x4200D7,
    VMSEAL_KMIP_TAG_FINAL_INDICATOR                          = 0x4200D8,
    VMSEAL_KMIP_TAG_RNG_PARAMETERS                           = 0x4200D9,
    VMSEAL_KMIP_TAG_RNG_ALGORITHM                            = 0x4200DA,
    VMSEAL_KMIP_TAG_DRBG_ALGORITHM                           = 0x4200DB,
    VMSEAL_KMIP_TAG_FIPS186_VARIATION                        = 0x4200DC,
    VMSEAL_KMIP_TAG_PREDICTION_RESISTANCE                    = 0x4200DD,
    VMSEAL_KMIP_TAG_RANDOM_NUMBER_GENERATOR                  = 0x4200DE,
    VMSEAL_KMIP_TAG_VALIDATION_INFORMATION                   = 0x4200DF,
    VMSEAL_KMIP_TAG_VALIDATION_AUTHORITY_TYPE                = 0x4200E0,
    VMSEAL_KMIP_TAG_VALIDATION_AUTHORITY_COUNTRY             = 0x4200E1,
    VMSEAL_KMIP_TAG_VALIDATION_AUTHORITY_URI                 = 0x4200E2,
    VMSEAL_KMIP_TAG_VALIDATION_VERSION_MAJOR                 = 0x4200E3,
    VMSEAL_KMIP_TAG_VALIDATION_VERSION_MINOR                 = 0x4200E4,
    VMSEAL_KMIP_TAG_VALIDATION_TYPE                          = 0x4200E5,
    VMSEAL_KMIP_TAG_VALIDATION_LEVEL                         = 0x4200E6,
    VMSEAL_KMIP_TAG_VALIDATION_CERTIFICATE_IDENTIFIER        = 0x4200E7,
    VMSEAL_KMIP_TAG_VALIDATION_CERTIFICATE_URI               = 0x4200E8,
    VMSEAL_KMIP_TAG_VALIDATION_VENDOR_URI                    = 0x4200E9,
    VMSEAL_KMIP_TAG_VALIDATION_PROFILE                       = 0x4200EA,
    VMSEAL_KMIP_TAG_PROFILE_INFORMATION                      = 0x4200EB,
    VMSEAL_KMIP_TAG_PROFILE_NAME                             = 0x4200EC,
    VMSEAL_KMIP_TAG_SERVER_URI                               = 0x4200ED,
    VMSEAL_KMIP_TAG_SERVER_PORT                              = 0x4200EE,
    VMSEAL_KMIP_TAG_STREAMING_CAPABILITY                     = 0x4200EF,
    VMSEAL_KMIP_TAG_ASYNCHRONOUS_CAPABILITY                  = 0x4200F0,
    VMSEAL_KMIP_TAG_ATTESTATION_CAPABILITY                   = 0x4200F1,
    VMSEAL_KMIP_TAG_UNWRAP_MODE                              = 0x4200F2,
    VMSEAL_KMIP_TAG_DESTROY_ACTION                           = 0x4200F3,
    VMSEAL_KMIP_TAG_SHREDDING_ALGORITHM                      = 0x4200F4,
    VMSEAL_KMIP_TAG_RNG_MODE                                 = 0x4200F5,
    VMSEAL_KMIP_TAG_CLIENT_REGISTRATION_METHOD               = 0x4200F6,
    VMSEAL_KMIP_TAG_CAPABILITY_INFORMATION                   = 0x4200F7,
    VMSEAL_KMIP_TAG_KEY_WRAP_TYPE                            = 0x4200F8,
    VMSEAL_KMIP_TAG_BATCH_UNDO_CAPABILITY                    = 0x4200F9,
    VMSEAL_KMIP_TAG_BATCH_CONTINUE_CAPABILITY                = 0x4200FA,
    VMSEAL_KMIP_TAG_PKCS_12_FRIENDLY_NAME                    = 0x4200FB,
    VMSEAL_KMIP_TAG_DESCRIPTION                              = 0x4200FC,
    VMSEAL_KMIP_TAG_COMMENT                                  = 0x4200FD,
    VMSEAL_KMIP_TAG_AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA = 0x4200FE,
    VMSEAL_KMIP_TAG_AUTHENTICATED_ENCRYPTION_TAG             = 0x4200FF,
    VMSEAL_KMIP_TAG_SALT_LENGTH                              = 0x420100,
    VMSEAL_KMIP_TAG_MASK_GENERATOR                           = 0x420101,
    VMSEAL_KMIP_TAG_MASK_GENERATOR_HASHING_ALGORITHM         = 0x420102,
    VMSEAL_KMIP_TAG_P_SOURCE                                 = 0x420103,
    VMSEAL_KMIP_TAG_TRAILER_FIELD                            = 0x420104,
    VMSEAL_KMIP_TAG_CLIENT_CORRELATION_VALUE                 = 0x420105,
    VMSEAL_KMIP_TAG_SERVER_CORRELATION_VALUE                 = 0x420106,
    VMSEAL_KMIP_TAG_DIGESTED_DATA                            = 0x420107,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_CN                   = 0x420108,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_O                    = 0x420109,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_OU                   = 0x42010A,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_EMAIL                = 0x42010B,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_C                    = 0x42010C,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_ST                   = 0x42010D,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_L                    = 0x42010E,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_UID                  = 0x42010F,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_SERIAL_NUMBER        = 0x420110,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_TITLE                = 0x420111,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_DC                   = 0x420112,
    VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT_DN_QUALIFIER         = 0x420113,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_CN                    = 0x420114,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_O                     = 0x420115,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_OU                    = 0x420116,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_EMAIL                 = 0x420117,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_C                     = 0x420118,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_ST                    = 0x420119,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_L                     = 0x42011A,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_UID                   = 0x42011B,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_SERIAL_NUMBER         = 0x42011C,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_TITLE                 = 0x42011D,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_DC                    = 0x42011E,
    VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER_DN_QUALIFIER          = 0x42011F,
    VMSEAL_KMIP_TAG_SENSITIVE                                = 0x420120,
    VMSEAL_KMIP_TAG_ALWAYS_SENSITIVE                         = 0x420121,
    VMSEAL_KMIP_TAG_EXTRACTABLE                              = 0x420122,
    VMSEAL_KMIP_TAG_NEVER_EXTRACTABLE                        = 0x420123,
    VMSEAL_KMIP_TAG_REPLACE_EXISTING                         = 0x420124,
    VMSEAL_KMIP_TAG_EXTENSION_FIRST                          = 0x540000,
    VMSEAL_KMIP_TAG_EXTENSION_LAST                           = 0x54FFFF,
    /* vmseal's own (docs/kmsd.md, "Cluster status over KMIP"): the cluster
     * facts kmsd puts in the Query's Server Information */
    VMSEAL_KMIP_TAG_X_STORE                                  = 0x54C001,
    VMSEAL_KMIP_TAG_X_NODE                                   = 0x54C002,
    VMSEAL_KMIP_TAG_X_FACTS_AGE                              = 0x54C003,
    VMSEAL_KMIP_TAG_X_DATABASE                               = 0x54C004,
    VMSEAL_KMIP_TAG_X_ROLE                                   = 0x54C005,
    VMSEAL_KMIP_TAG_X_ADDRESS                                = 0x54C006,
    VMSEAL_KMIP_TAG_X_VERSION                                = 0x54C007,
    VMSEAL_KMIP_TAG_X_ERROR                                  = 0x54C008,
    VMSEAL_KMIP_TAG_X_SYNCHRONOUS_COMMIT                     = 0x54C009,
    VMSEAL_KMIP_TAG_X_SYNCHRONOUS_STANDBY_NAMES              = 0x54C00A,
    VMSEAL_KMIP_TAG_X_STANDBY                                = 0x54C00B,
    VMSEAL_KMIP_TAG_X_NAME                                   = 0x54C00C,
    VMSEAL_KMIP_TAG_X_STATE                                  = 0x54C00D,
    VMSEAL_KMIP_TAG_X_SYNC_STATE                             = 0x54C00E,
    VMSEAL_KMIP_TAG_X_REPLAY_LAG                             = 0x54C00F,
    VMSEAL_KMIP_TAG_X_BYTES_BEHIND                           = 0x54C010,
    VMSEAL_KMIP_TAG_X_CLUSTER_NODE                           = 0x54C011,
    VMSEAL_KMIP_TAG_X_SEEN_AGO                               = 0x54C012,
    VMSEAL_KMIP_TAG_X_STANDBYS_TOTAL                         = 0x54C013,
    VMSEAL_KMIP_TAG_X_NODES_TOTAL                            = 0x54C014,
};

/* Operation (§9.1.3.2.27). */
enum vmseal_kmip_operation {
    VMSEAL_KMIP_OP_CREATE = 0x01,
    VMSEAL_KMIP_OP_CREATE_KEY_PAIR = 0x02,
    VMSEAL_KMIP_OP_REGISTER = 0x03,
    VMSEAL_KMIP_OP_REKEY = 0x04,
    VMSEAL_KMIP_OP_DERIVE_KEY = 0x05,
    VMSEAL_KMIP_OP_CERTIFY = 0x06,
    VMSEAL_KMIP_OP_RECERTIFY = 0x07,
    VMSEAL_KMIP_OP_LOCATE = 0x08,
    VMSEAL_KMIP_OP_CHECK = 0x09,
    VMSEAL_KMIP_OP_GET = 0x0A,
    VMSEAL_KMIP_OP_GET_ATTRIBUTES = 0x0B,
    VMSEAL_KMIP_OP_GET_ATTRIBUTE_LIST = 0x0C,
    VMSEAL_KMIP_OP_ADD_ATTRIBUTE = 0x0D,
    VMSEAL_KMIP_OP_MODIFY_ATTRIBUTE = 0x0E,
    VMSEAL_KMIP_OP_DELETE_ATTRIBUTE = 0x0F,
    VMSEAL_KMIP_OP_OBTAIN_LEASE = 0x10,
    VMSEAL_KMIP_OP_GET_USAGE_ALLOCATION = 0x11,
    VMSEAL_KMIP_OP_ACTIVATE = 0x12,
    VMSEAL_KMIP_OP_REVOKE = 0x13,
    VMSEAL_KMIP_OP_DESTROY = 0x14,
    VMSEAL_KMIP_OP_ARCHIVE = 0x15,
    VMSEAL_KMIP_OP_RECOVER = 0x16,
    VMSEAL_KMIP_OP_VALIDATE = 0x17,
    VMSEAL_KMIP_OP_QUERY = 0x18,
    VMSEAL_KMIP_OP_CANCEL = 0x19,
    VMSEAL_KMIP_OP_POLL = 0x1A,
    VMSEAL_KMIP_OP_NOTIFY = 0x1B,
    VMSEAL_KMIP_OP_PUT = 0x1C,
    VMSEAL_KMIP_OP_REKEY_KEY_PAIR = 0x1D,      /* 1.1 */
    VMSEAL_KMIP_OP_DISCOVER_VERSIONS = 0x1E,   /* 1.1 */
    VMSEAL_KMIP_OP_ENCRYPT = 0x1F,             /* 1.2 */
    VMSEAL_KMIP_OP_DECRYPT = 0x20,
    VMSEAL_KMIP_OP_SIGN = 0x21,
    VMSEAL_KMIP_OP_SIGNATURE_VERIFY = 0x22,
    VMSEAL_KMIP_OP_MAC = 0x23,
    VMSEAL_KMIP_OP_MAC_VERIFY = 0x24,
    VMSEAL_KMIP_OP_RNG_RETRIEVE = 0x25,
    VMSEAL_KMIP_OP_RNG_SEED = 0x26,
    VMSEAL_KMIP_OP_HASH = 0x27,
    VMSEAL_KMIP_OP_CREATE_SPLIT_KEY = 0x28,
    VMSEAL_KMIP_OP_JOIN_SPLIT_KEY = 0x29,
    VMSEAL_KMIP_OP_IMPORT = 0x2A,              /* 1.4 */
    VMSEAL_KMIP_OP_EXPORT = 0x2B,              /* 1.4 */
};

/* Object Type (§9.1.3.2.12). */
enum vmseal_kmip_object_type {
    VMSEAL_KMIP_OBJ_CERTIFICATE = 0x01,
    VMSEAL_KMIP_OBJ_SYMMETRIC_KEY = 0x02,
    VMSEAL_KMIP_OBJ_PUBLIC_KEY = 0x03,
    VMSEAL_KMIP_OBJ_PRIVATE_KEY = 0x04,
    VMSEAL_KMIP_OBJ_SPLIT_KEY = 0x05,
    VMSEAL_KMIP_OBJ_TEMPLATE = 0x06,
    VMSEAL_KMIP_OBJ_SECRET_DATA = 0x07,
    VMSEAL_KMIP_OBJ_OPAQUE_DATA = 0x08,
    VMSEAL_KMIP_OBJ_PGP_KEY = 0x09,
};

/* Cryptographic Algorithm (§9.1.3.2.13), the ones vmseal names. */
enum vmseal_kmip_crypto_alg {
    VMSEAL_KMIP_ALG_DES = 0x01,
    VMSEAL_KMIP_ALG_3DES = 0x02,
    VMSEAL_KMIP_ALG_AES = 0x03,
    VMSEAL_KMIP_ALG_RSA = 0x04,
    VMSEAL_KMIP_ALG_DSA = 0x05,
    VMSEAL_KMIP_ALG_ECDSA = 0x06,
    VMSEAL_KMIP_ALG_HMAC_SHA1 = 0x07,
    VMSEAL_KMIP_ALG_HMAC_SHA224 = 0x08,
    VMSEAL_KMIP_ALG_HMAC_SHA256 = 0x09,
    VMSEAL_KMIP_ALG_HMAC_SHA384 = 0x0A,
    VMSEAL_KMIP_ALG_HMAC_SHA512 = 0x0B,
    VMSEAL_KMIP_ALG_HMAC_MD5 = 0x0C,
    VMSEAL_KMIP_ALG_DH = 0x0D,
    VMSEAL_KMIP_ALG_ECDH = 0x0E,
    VMSEAL_KMIP_ALG_EC = 0x1A,                 /* 1.2 */
    VMSEAL_KMIP_ALG_CHACHA20 = 0x1C,           /* 1.4 */
    VMSEAL_KMIP_ALG_CHACHA20_POLY1305 = 0x1E,  /* 1.4 */
};

/* Cryptographic Usage Mask bits (§9.1.3.3.1). */
enum vmseal_kmip_usage_mask {
    VMSEAL_KMIP_USAGE_SIGN = 0x0001,
    VMSEAL_KMIP_USAGE_VERIFY = 0x0002,
    VMSEAL_KMIP_USAGE_ENCRYPT = 0x0004,
    VMSEAL_KMIP_USAGE_DECRYPT = 0x0008,
    VMSEAL_KMIP_USAGE_WRAP_KEY = 0x0010,
    VMSEAL_KMIP_USAGE_UNWRAP_KEY = 0x0020,
    VMSEAL_KMIP_USAGE_EXPORT = 0x0040,
    VMSEAL_KMIP_USAGE_MAC_GENERATE = 0x0080,
    VMSEAL_KMIP_USAGE_MAC_VERIFY = 0x0100,
    VMSEAL_KMIP_USAGE_DERIVE_KEY = 0x0200,
    VMSEAL_KMIP_USAGE_CONTENT_COMMITMENT = 0x0400,
    VMSEAL_KMIP_USAGE_KEY_AGREEMENT = 0x0800,
    VMSEAL_KMIP_USAGE_CERTIFICATE_SIGN = 0x1000,
    VMSEAL_KMIP_USAGE_CRL_SIGN = 0x2000,
};

/* State (§9.1.3.2.17). */
enum vmseal_kmip_state {
    VMSEAL_KMIP_STATE_PRE_ACTIVE = 0x01,
    VMSEAL_KMIP_STATE_ACTIVE = 0x02,
    VMSEAL_KMIP_STATE_DEACTIVATED = 0x03,
    VMSEAL_KMIP_STATE_COMPROMISED = 0x04,
    VMSEAL_KMIP_STATE_DESTROYED = 0x05,
    VMSEAL_KMIP_STATE_DESTROYED_COMPROMISED = 0x06,
};

/* Result Status (§9.1.3.2.28). */
enum vmseal_kmip_result_status {
    VMSEAL_KMIP_STATUS_SUCCESS = 0x00,
    VMSEAL_KMIP_STATUS_OPERATION_FAILED = 0x01,
    VMSEAL_KMIP_STATUS_OPERATION_PENDING = 0x02,
    VMSEAL_KMIP_STATUS_OPERATION_UNDONE = 0x03,
};

/* Result Reason (§9.1.3.2.29). */
enum vmseal_kmip_result_reason {
    VMSEAL_KMIP_REASON_ITEM_NOT_FOUND = 0x01,
    VMSEAL_KMIP_REASON_RESPONSE_TOO_LARGE = 0x02,
    VMSEAL_KMIP_REASON_AUTHENTICATION_NOT_SUCCESSFUL = 0x03,
    VMSEAL_KMIP_REASON_INVALID_MESSAGE = 0x04,
    VMSEAL_KMIP_REASON_OPERATION_NOT_SUPPORTED = 0x05,
    VMSEAL_KMIP_REASON_MISSING_DATA = 0x06,
    VMSEAL_KMIP_REASON_INVALID_FIELD = 0x07,
    VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED = 0x08,
    VMSEAL_KMIP_REASON_OPERATION_CANCELED_BY_REQUESTER = 0x09,
    VMSEAL_KMIP_REASON_CRYPTOGRAPHIC_FAILURE = 0x0A,
    VMSEAL_KMIP_REASON_ILLEGAL_OPERATION = 0x0B,
    VMSEAL_KMIP_REASON_PERMISSION_DENIED = 0x0C,
    VMSEAL_KMIP_REASON_OBJECT_ARCHIVED = 0x0D,
    VMSEAL_KMIP_REASON_INDEX_OUT_OF_BOUNDS = 0x0E,
    VMSEAL_KMIP_REASON_APPLICATION_NAMESPACE_NOT_SUPPORTED = 0x0F,
    VMSEAL_KMIP_REASON_KEY_FORMAT_TYPE_NOT_SUPPORTED = 0x10,
    VMSEAL_KMIP_REASON_KEY_COMPRESSION_TYPE_NOT_SUPPORTED = 0x11,
    VMSEAL_KMIP_REASON_ENCODING_OPTION_ERROR = 0x12,       /* 1.1 */
    VMSEAL_KMIP_REASON_KEY_VALUE_NOT_PRESENT = 0x13,       /* 1.2 */
    VMSEAL_KMIP_REASON_ATTESTATION_REQUIRED = 0x14,
    VMSEAL_KMIP_REASON_ATTESTATION_FAILED = 0x15,
    VMSEAL_KMIP_REASON_SENSITIVE = 0x16,                   /* 1.4 */
    VMSEAL_KMIP_REASON_NOT_EXTRACTABLE = 0x17,
    VMSEAL_KMIP_REASON_OBJECT_ALREADY_EXISTS = 0x18,
    VMSEAL_KMIP_REASON_GENERAL_FAILURE = 0x100,
};

/* Key Format Type (§9.1.3.2.3). */
enum vmseal_kmip_key_format {
    VMSEAL_KMIP_KEYFMT_RAW = 0x01,
    VMSEAL_KMIP_KEYFMT_OPAQUE = 0x02,
    VMSEAL_KMIP_KEYFMT_PKCS1 = 0x03,
    VMSEAL_KMIP_KEYFMT_PKCS8 = 0x04,
    VMSEAL_KMIP_KEYFMT_X509 = 0x05,
    VMSEAL_KMIP_KEYFMT_EC_PRIVATE_KEY = 0x06,
    VMSEAL_KMIP_KEYFMT_TRANSPARENT_SYMMETRIC_KEY = 0x07,
    VMSEAL_KMIP_KEYFMT_PKCS12 = 0x16,          /* 1.4 */
};

/* Name Type (§9.1.3.2.11). */
enum vmseal_kmip_name_type {
    VMSEAL_KMIP_NAME_UNINTERPRETED_TEXT_STRING = 0x01,
    VMSEAL_KMIP_NAME_URI = 0x02,
};

/* Query Function (§9.1.3.2.24). */
enum vmseal_kmip_query_function {
    VMSEAL_KMIP_QUERY_OPERATIONS = 0x01,
    VMSEAL_KMIP_QUERY_OBJECTS = 0x02,
    VMSEAL_KMIP_QUERY_SERVER_INFORMATION = 0x03,
    VMSEAL_KMIP_QUERY_APPLICATION_NAMESPACES = 0x04,
    VMSEAL_KMIP_QUERY_EXTENSION_LIST = 0x05,   /* 1.1 */
    VMSEAL_KMIP_QUERY_EXTENSION_MAP = 0x06,
    VMSEAL_KMIP_QUERY_ATTESTATION_TYPES = 0x07, /* 1.2 */
    VMSEAL_KMIP_QUERY_RNGS = 0x08,             /* 1.3 */
    VMSEAL_KMIP_QUERY_VALIDATIONS = 0x09,
    VMSEAL_KMIP_QUERY_PROFILES = 0x0A,
    VMSEAL_KMIP_QUERY_CAPABILITIES = 0x0B,
    VMSEAL_KMIP_QUERY_CLIENT_REGISTRATION_METHODS = 0x0C,
};

/* Revocation Reason Code (§9.1.3.2.19). */
enum vmseal_kmip_revocation_reason {
    VMSEAL_KMIP_REVOKE_UNSPECIFIED = 0x01,
    VMSEAL_KMIP_REVOKE_KEY_COMPROMISE = 0x02,
    VMSEAL_KMIP_REVOKE_CA_COMPROMISE = 0x03,
    VMSEAL_KMIP_REVOKE_AFFILIATION_CHANGED = 0x04,
    VMSEAL_KMIP_REVOKE_SUPERSEDED = 0x05,
    VMSEAL_KMIP_REVOKE_CESSATION_OF_OPERATION = 0x06,
    VMSEAL_KMIP_REVOKE_PRIVILEGE_WITHDRAWN = 0x07,
};

/* Credential Type (§9.1.3.2.1). */
enum vmseal_kmip_credential_type {
    VMSEAL_KMIP_CRED_USERNAME_AND_PASSWORD = 0x01,
    VMSEAL_KMIP_CRED_DEVICE = 0x02,            /* 1.1 */
    VMSEAL_KMIP_CRED_ATTESTATION = 0x03,       /* 1.2 */
};

/* Batch Error Continuation Option (§9.1.3.2.30). */
enum vmseal_kmip_batch_error_option {
    VMSEAL_KMIP_BATCH_CONTINUE = 0x01,
    VMSEAL_KMIP_BATCH_STOP = 0x02,
    VMSEAL_KMIP_BATCH_UNDO = 0x03,
};

/* Link Type (§9.1.3.2.20). */
enum vmseal_kmip_link_type {
    VMSEAL_KMIP_LINK_CERTIFICATE = 0x101,
    VMSEAL_KMIP_LINK_PUBLIC_KEY = 0x102,
    VMSEAL_KMIP_LINK_PRIVATE_KEY = 0x103,
    VMSEAL_KMIP_LINK_DERIVATION_BASE_OBJECT = 0x104,
    VMSEAL_KMIP_LINK_DERIVED_KEY = 0x105,
    VMSEAL_KMIP_LINK_REPLACEMENT_OBJECT = 0x106,
    VMSEAL_KMIP_LINK_REPLACED_OBJECT = 0x107,
    VMSEAL_KMIP_LINK_PARENT = 0x108,           /* 1.2 */
    VMSEAL_KMIP_LINK_CHILD = 0x109,
    VMSEAL_KMIP_LINK_PREVIOUS = 0x10A,
    VMSEAL_KMIP_LINK_NEXT = 0x10B,
};

/* Secret Data Type (§9.1.3.2.9). */
enum vmseal_kmip_secret_data_type {
    VMSEAL_KMIP_SECRET_PASSWORD = 0x01,
    VMSEAL_KMIP_SECRET_SEED = 0x02,
};

/* Storage Status Mask bits (§9.1.3.3.2). */
enum vmseal_kmip_storage_status {
    VMSEAL_KMIP_STORAGE_ONLINE = 0x01,
    VMSEAL_KMIP_STORAGE_ARCHIVAL = 0x02,
};

/* Standard attribute names (KMIP 1.4 §3; Attribute Name text). A standard
 * attribute's name is also the name of its tag, so
 * vmseal_kmip_tag_by_name() maps one to the other. Custom attributes start
 * "x-" (client) or "y-" (server). */
#define VMSEAL_KMIP_ATTR_UNIQUE_IDENTIFIER "Unique Identifier"
#define VMSEAL_KMIP_ATTR_NAME "Name"
#define VMSEAL_KMIP_ATTR_OBJECT_TYPE "Object Type"
#define VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_ALGORITHM "Cryptographic Algorithm"
#define VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_LENGTH "Cryptographic Length"
#define VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_PARAMETERS "Cryptographic Parameters"
#define VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_DOMAIN_PARAMETERS "Cryptographic Domain Parameters"
#define VMSEAL_KMIP_ATTR_CERTIFICATE_TYPE "Certificate Type"
#define VMSEAL_KMIP_ATTR_CERTIFICATE_LENGTH "Certificate Length"
#define VMSEAL_KMIP_ATTR_DIGITAL_SIGNATURE_ALGORITHM "Digital Signature Algorithm"
#define VMSEAL_KMIP_ATTR_DIGEST "Digest"
#define VMSEAL_KMIP_ATTR_OPERATION_POLICY_NAME "Operation Policy Name"
#define VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_USAGE_MASK "Cryptographic Usage Mask"
#define VMSEAL_KMIP_ATTR_LEASE_TIME "Lease Time"
#define VMSEAL_KMIP_ATTR_USAGE_LIMITS "Usage Limits"
#define VMSEAL_KMIP_ATTR_STATE "State"
#define VMSEAL_KMIP_ATTR_INITIAL_DATE "Initial Date"
#define VMSEAL_KMIP_ATTR_ACTIVATION_DATE "Activation Date"
#define VMSEAL_KMIP_ATTR_PROCESS_START_DATE "Process Start Date"
#define VMSEAL_KMIP_ATTR_PROTECT_STOP_DATE "Protect Stop Date"
#define VMSEAL_KMIP_ATTR_DEACTIVATION_DATE "Deactivation Date"
#define VMSEAL_KMIP_ATTR_DESTROY_DATE "Destroy Date"
#define VMSEAL_KMIP_ATTR_COMPROMISE_OCCURRENCE_DATE "Compromise Occurrence Date"
#define VMSEAL_KMIP_ATTR_COMPROMISE_DATE "Compromise Date"
#define VMSEAL_KMIP_ATTR_REVOCATION_REASON "Revocation Reason"
#define VMSEAL_KMIP_ATTR_ARCHIVE_DATE "Archive Date"
#define VMSEAL_KMIP_ATTR_OBJECT_GROUP "Object Group"
#define VMSEAL_KMIP_ATTR_FRESH "Fresh"
#define VMSEAL_KMIP_ATTR_LINK "Link"
#define VMSEAL_KMIP_ATTR_APPLICATION_SPECIFIC_INFORMATION "Application Specific Information"
#define VMSEAL_KMIP_ATTR_CONTACT_INFORMATION "Contact Information"
#define VMSEAL_KMIP_ATTR_LAST_CHANGE_DATE "Last Change Date"
#define VMSEAL_KMIP_ATTR_ALTERNATIVE_NAME "Alternative Name"
#define VMSEAL_KMIP_ATTR_KEY_VALUE_PRESENT "Key Value Present"
#define VMSEAL_KMIP_ATTR_KEY_VALUE_LOCATION "Key Value Location"
#define VMSEAL_KMIP_ATTR_ORIGINAL_CREATION_DATE "Original Creation Date"
#define VMSEAL_KMIP_ATTR_RANDOM_NUMBER_GENERATOR "Random Number Generator"
#define VMSEAL_KMIP_ATTR_PKCS12_FRIENDLY_NAME "PKCS#12 Friendly Name"
#define VMSEAL_KMIP_ATTR_DESCRIPTION "Description"
#define VMSEAL_KMIP_ATTR_COMMENT "Comment"
#define VMSEAL_KMIP_ATTR_SENSITIVE "Sensitive"
#define VMSEAL_KMIP_ATTR_ALWAYS_SENSITIVE "Always Sensitive"
#define VMSEAL_KMIP_ATTR_EXTRACTABLE "Extractable"
#define VMSEAL_KMIP_ATTR_NEVER_EXTRACTABLE "Never Extractable"

#endif
