/*
 * wasmlambda guest /tmp: a small in-memory file system inside the instance.
 *
 * Theory of operation: the host preopens an empty, read-only directory at
 * /tmp (so wasi-libc's preopen table has a /tmp entry and the host never
 * hands out that descriptor for anything else).  The link step wraps
 * wasi-libc's __wasi_* functions (`-Wl,--wrap=__wasi_path_open`, ...): a
 * call on the /tmp preopen, or on a descriptor this file handed out, is
 * served here from linear memory; every other call goes to the host
 * unchanged (`__real___wasi_*`).
 *
 * So /tmp is private to the instance, starts as the function's snapshot
 * left it (empty, unless its import wrote there), costs the host nothing,
 * and counts against the function's memory limit (file data is malloc'd:
 * when memory runs out, writes fail with ENOSPC).  A warm instance keeps its
 * files between calls, like its module globals.
 *
 * Descriptors handed out here start at VFD_BASE, far above what the host
 * allocates.  Only regular files and directories exist: no links, no
 * symlinks.  `..` never leaves /tmp.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

#define VFD_BASE 0x40000000u
#define MAX_OPEN 4096
#define MAX_FILE_BYTES 0x40000000u /* 1 GiB: offsets stay far from 32-bit overflow */
#define ALL_RIGHTS ((__wasi_rights_t)0x1FFFFFFF)

typedef struct node {
    struct node *parent, *first_child, *next_sibling;
    char *name;
    uint8_t *data;
    uint32_t size, capacity;
    uint32_t open_count;
    uint8_t is_dir, linked; /* linked: reachable from the root */
    uint64_t ino;
    __wasi_timestamp_t atim, mtim, ctim;
} node;

typedef struct {
    node *node;
    uint64_t offset;
    __wasi_fdflags_t flags;
    uint8_t readable, writable, used;
} handle;

static node root = {.is_dir = 1, .linked = 1, .ino = 1};
static __wasi_fd_t root_fd = (__wasi_fd_t)-1; /* the host's /tmp preopen, found while wasi-libc lists them */
static handle *handles;
static uint32_t handle_count;
static uint64_t next_ino = 2;

#define REAL(name) __real___wasi_##name
#define WRAP(name) __wrap___wasi_##name

__wasi_errno_t REAL(fd_prestat_dir_name)(__wasi_fd_t, uint8_t *, __wasi_size_t);
__wasi_errno_t REAL(path_open)(__wasi_fd_t, __wasi_lookupflags_t, const char *, __wasi_oflags_t, __wasi_rights_t,
                               __wasi_rights_t, __wasi_fdflags_t, __wasi_fd_t *);
__wasi_errno_t REAL(fd_read)(__wasi_fd_t, const __wasi_iovec_t *, size_t, __wasi_size_t *);
__wasi_errno_t REAL(fd_pread)(__wasi_fd_t, const __wasi_iovec_t *, size_t, __wasi_filesize_t, __wasi_size_t *);
__wasi_errno_t REAL(fd_write)(__wasi_fd_t, const __wasi_ciovec_t *, size_t, __wasi_size_t *);
__wasi_errno_t REAL(fd_pwrite)(__wasi_fd_t, const __wasi_ciovec_t *, size_t, __wasi_filesize_t, __wasi_size_t *);
__wasi_errno_t REAL(fd_seek)(__wasi_fd_t, __wasi_filedelta_t, __wasi_whence_t, __wasi_filesize_t *);
__wasi_errno_t REAL(fd_tell)(__wasi_fd_t, __wasi_filesize_t *);
__wasi_errno_t REAL(fd_close)(__wasi_fd_t);
__wasi_errno_t REAL(fd_sync)(__wasi_fd_t);
__wasi_errno_t REAL(fd_datasync)(__wasi_fd_t);
__wasi_errno_t REAL(fd_advise)(__wasi_fd_t, __wasi_filesize_t, __wasi_filesize_t, __wasi_advice_t);
__wasi_errno_t REAL(fd_allocate)(__wasi_fd_t, __wasi_filesize_t, __wasi_filesize_t);
__wasi_errno_t REAL(fd_fdstat_get)(__wasi_fd_t, __wasi_fdstat_t *);
__wasi_errno_t REAL(fd_fdstat_set_flags)(__wasi_fd_t, __wasi_fdflags_t);
__wasi_errno_t REAL(fd_filestat_get)(__wasi_fd_t, __wasi_filestat_t *);
__wasi_errno_t REAL(fd_filestat_set_size)(__wasi_fd_t, __wasi_filesize_t);
__wasi_errno_t REAL(fd_filestat_set_times)(__wasi_fd_t, __wasi_timestamp_t, __wasi_timestamp_t, __wasi_fstflags_t);
__wasi_errno_t REAL(fd_readdir)(__wasi_fd_t, uint8_t *, __wasi_size_t, __wasi_dircookie_t, __wasi_size_t *);
__wasi_errno_t REAL(fd_renumber)(__wasi_fd_t, __wasi_fd_t);
__wasi_errno_t REAL(path_create_directory)(__wasi_fd_t, const char *);
__wasi_errno_t REAL(path_filestat_get)(__wasi_fd_t, __wasi_lookupflags_t, const char *, __wasi_filestat_t *);
__wasi_errno_t REAL(path_filestat_set_times)(__wasi_fd_t, __wasi_lookupflags_t, const char *, __wasi_timestamp_t,
                                             __wasi_timestamp_t, __wasi_fstflags_t);
__wasi_errno_t REAL(path_link)(__wasi_fd_t, __wasi_lookupflags_t, const char *, __wasi_fd_t, const char *);
__wasi_errno_t REAL(path_readlink)(__wasi_fd_t, const char *, uint8_t *, __wasi_size_t, __wasi_size_t *);
__wasi_errno_t REAL(path_remove_directory)(__wasi_fd_t, const char *);
__wasi_errno_t REAL(path_rename)(__wasi_fd_t, const char *, __wasi_fd_t, const char *);
__wasi_errno_t REAL(path_symlink)(const char *, __wasi_fd_t, const char *);
__wasi_errno_t REAL(path_unlink_file)(__wasi_fd_t, const char *);

/* -- nodes ------------------------------------------------------------- */

static __wasi_timestamp_t now(void) {
    __wasi_timestamp_t time = 0;
    (void)__wasi_clock_time_get(__WASI_CLOCKID_REALTIME, 1000, &time);
    return time;
}

static void free_if_unused(node *n) {
    if (n != &root && !n->linked && n->open_count == 0 && n->first_child == NULL) {
        free(n->name);
        free(n->data);
        free(n);
    }
}

static void detach(node *n) {
    node **link = &n->parent->first_child;
    while (*link != n) link = &(*link)->next_sibling;
    *link = n->next_sibling;
    n->parent->mtim = now();
    n->next_sibling = NULL;
    n->linked = 0;
}

static void attach(node *parent, node *n) {
    node **link = &parent->first_child;
    while (*link != NULL) link = &(*link)->next_sibling; /* appended: readdir cookies stay put */
    *link = n;
    n->parent = parent;
    n->linked = 1;
    parent->mtim = now();
}

static node *child(node *dir, const char *name, size_t length) {
    for (node *c = dir->first_child; c != NULL; c = c->next_sibling)
        if (strlen(c->name) == length && memcmp(c->name, name, length) == 0) return c;
    return NULL;
}

static node *new_node(const char *name, size_t length, int is_dir) {
    node *n = calloc(1, sizeof(node));
    if (n == NULL) return NULL;
    n->name = malloc(length + 1);
    if (n->name == NULL) {
        free(n);
        return NULL;
    }
    memcpy(n->name, name, length);
    n->name[length] = 0;
    n->is_dir = (uint8_t)is_dir;
    n->ino = next_ino++;
    n->atim = n->mtim = n->ctim = now();
    return n;
}

/* Walk `path` from `dir`: *parent is the directory holding the last
 * component (named by *name, *length), *found that entry or NULL.  A path
 * naming `dir` itself ("." or "a/..") gives *found = dir and length 0. */
static __wasi_errno_t resolve(node *dir, const char *path, node **parent, const char **name, size_t *length,
                              node **found) {
    if (*path == 0) return __WASI_ERRNO_NOENT;
    node *at = dir;
    const char *last = NULL;
    size_t last_length = 0;
    for (const char *p = path; *p != 0;) {
        while (*p == '/') p++;
        const char *start = p;
        while (*p != 0 && *p != '/') p++;
        size_t size = (size_t)(p - start);
        if (size == 0) break;
        if (last != NULL) { /* step into the previous component */
            if (last_length == 1 && last[0] == '.') {
            } else if (last_length == 2 && last[0] == '.' && last[1] == '.') {
                if (at == &root) return __WASI_ERRNO_NOTCAPABLE;
                at = at->parent;
            } else {
                node *next = child(at, last, last_length);
                if (next == NULL) return __WASI_ERRNO_NOENT;
                if (!next->is_dir) return __WASI_ERRNO_NOTDIR;
                at = next;
            }
        }
        last = start;
        last_length = size;
    }
    if (last == NULL || (last_length == 1 && last[0] == '.')) {
        *parent = at, *name = "", *length = 0, *found = at;
        return 0;
    }
    if (last_length == 2 && last[0] == '.' && last[1] == '.') {
        if (at == &root) return __WASI_ERRNO_NOTCAPABLE;
        *parent = at->parent, *name = "", *length = 0, *found = at->parent;
        return 0;
    }
    if (last_length > 255) return __WASI_ERRNO_NAMETOOLONG;
    *parent = at, *name = last, *length = last_length, *found = child(at, last, last_length);
    size_t total = strlen(path);
    if (*found != NULL && !(*found)->is_dir && total > 0 && path[total - 1] == '/') return __WASI_ERRNO_NOTDIR;
    return 0;
}

/* The existing entry `path` names, from `dir`. */
static __wasi_errno_t find(node *dir, const char *path, node **found) {
    node *parent;
    const char *name;
    size_t length;
    __wasi_errno_t error = resolve(dir, path, &parent, &name, &length, found);
    return error ? error : *found == NULL ? __WASI_ERRNO_NOENT : 0;
}

static __wasi_errno_t reserve(node *n, uint64_t size) {
    if (size > MAX_FILE_BYTES) return __WASI_ERRNO_FBIG;
    if (size <= n->capacity) return 0;
    uint64_t capacity = n->capacity < 4096 ? 4096 : n->capacity;
    while (capacity < size) capacity *= 2;
    if (capacity > MAX_FILE_BYTES) capacity = MAX_FILE_BYTES;
    uint8_t *data = realloc(n->data, (size_t)capacity);
    if (data == NULL) return __WASI_ERRNO_NOSPC; /* the function's memory limit */
    n->data = data;
    n->capacity = (uint32_t)capacity;
    return 0;
}

static __wasi_errno_t set_size(node *n, uint64_t size) {
    __wasi_errno_t error = reserve(n, size);
    if (error) return error;
    if (size > n->size) memset(n->data + n->size, 0, (size_t)(size - n->size));
    n->size = (uint32_t)size;
    n->mtim = now();
    return 0;
}

/* -- descriptors --------------------------------------------------------- */

static handle *lookup(__wasi_fd_t fd) {
    if (fd < VFD_BASE || fd - VFD_BASE >= handle_count) return NULL;
    handle *h = &handles[fd - VFD_BASE];
    return h->used ? h : NULL;
}

/* The directory a path call starts from: the /tmp root, a directory opened here, or NULL (the host's). */
static node *directory_of(__wasi_fd_t fd) {
    if (fd == root_fd) return &root;
    handle *h = lookup(fd);
    return h != NULL ? h->node : NULL;
}

static int ours(__wasi_fd_t fd) { return fd == root_fd || lookup(fd) != NULL; }

static __wasi_errno_t new_handle(node *n, int readable, int writable, __wasi_fdflags_t flags, __wasi_fd_t *fd) {
    uint32_t slot = 0;
    while (slot < handle_count && handles[slot].used) slot++;
    if (slot == handle_count) {
        if (handle_count == MAX_OPEN) return __WASI_ERRNO_NFILE;
        uint32_t count = handle_count ? handle_count * 2 : 16;
        handle *grown = realloc(handles, count * sizeof(handle));
        if (grown == NULL) return __WASI_ERRNO_NOMEM;
        memset(grown + handle_count, 0, (count - handle_count) * sizeof(handle));
        handles = grown;
        handle_count = count;
    }
    handles[slot] = (handle){.node = n, .flags = flags, .readable = (uint8_t)readable,
                             .writable = (uint8_t)writable, .used = 1};
    n->open_count++;
    *fd = VFD_BASE + slot;
    return 0;
}

static void stat_of(node *n, __wasi_filestat_t *stat) {
    stat->dev = 0x776c; /* "wl" */
    stat->ino = n->ino;
    stat->filetype = n->is_dir ? __WASI_FILETYPE_DIRECTORY : __WASI_FILETYPE_REGULAR_FILE;
    stat->nlink = n->linked ? 1 : 0;
    stat->size = n->is_dir ? 4096 : n->size;
    stat->atim = n->atim, stat->mtim = n->mtim, stat->ctim = n->ctim;
}

/* -- the wrapped calls ------------------------------------------------------ */

__wasi_errno_t WRAP(fd_prestat_dir_name)(__wasi_fd_t fd, uint8_t *path, __wasi_size_t length) {
    __wasi_errno_t error = REAL(fd_prestat_dir_name)(fd, path, length);
    if (error == 0 && length == 4 && memcmp(path, "/tmp", 4) == 0) root_fd = fd;
    return error;
}

__wasi_errno_t WRAP(path_open)(__wasi_fd_t fd, __wasi_lookupflags_t lookup_flags, const char *path,
                               __wasi_oflags_t oflags, __wasi_rights_t base, __wasi_rights_t inheriting,
                               __wasi_fdflags_t fdflags, __wasi_fd_t *opened) {
    node *dir = directory_of(fd);
    if (dir == NULL) return REAL(path_open)(fd, lookup_flags, path, oflags, base, inheriting, fdflags, opened);
    if (!dir->is_dir) return __WASI_ERRNO_NOTDIR;
    node *parent, *found;
    const char *name;
    size_t length;
    __wasi_errno_t error = resolve(dir, path, &parent, &name, &length, &found);
    if (error) return error;
    int writable = (base & __WASI_RIGHTS_FD_WRITE) != 0;
    if (found == NULL) {
        if (!(oflags & __WASI_OFLAGS_CREAT)) return __WASI_ERRNO_NOENT;
        if (oflags & __WASI_OFLAGS_DIRECTORY) return __WASI_ERRNO_NOENT;
        found = new_node(name, length, 0);
        if (found == NULL) return __WASI_ERRNO_NOSPC;
        attach(parent, found);
    } else {
        if ((oflags & __WASI_OFLAGS_CREAT) && (oflags & __WASI_OFLAGS_EXCL)) return __WASI_ERRNO_EXIST;
        if ((oflags & __WASI_OFLAGS_DIRECTORY) && !found->is_dir) return __WASI_ERRNO_NOTDIR;
        if (found->is_dir && writable) return __WASI_ERRNO_ISDIR;
        if ((oflags & __WASI_OFLAGS_TRUNC) && !found->is_dir) {
            error = set_size(found, 0);
            if (error) return error;
        }
    }
    return new_handle(found, (base & __WASI_RIGHTS_FD_READ) != 0, writable, fdflags, opened);
}

static __wasi_errno_t transfer(handle *h, const __wasi_iovec_t *iovs, size_t count, uint64_t offset, int writing,
                               __wasi_size_t *done) {
    node *n = h->node;
    if (n->is_dir) return __WASI_ERRNO_ISDIR;
    if (writing ? !h->writable : !h->readable) return __WASI_ERRNO_BADF;
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) total += iovs[i].buf_len;
    if (writing) {
        if (offset + total > MAX_FILE_BYTES) return __WASI_ERRNO_FBIG;
        if (offset + total > n->size) {
            __wasi_errno_t error = set_size(n, offset + total);
            if (error) return error;
        }
    }
    uint64_t moved = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t at = offset + moved;
        uint64_t size = iovs[i].buf_len;
        if (!writing) {
            if (at >= n->size) break;
            if (at + size > n->size) size = n->size - at;
            memcpy(iovs[i].buf, n->data + at, (size_t)size);
        } else {
            memcpy(n->data + at, iovs[i].buf, (size_t)size);
        }
        moved += size;
    }
    if (writing) n->mtim = now();
    *done = (__wasi_size_t)moved;
    return 0;
}

__wasi_errno_t WRAP(fd_read)(__wasi_fd_t fd, const __wasi_iovec_t *iovs, size_t count, __wasi_size_t *done) {
    handle *h = lookup(fd);
    if (h == NULL) return fd == root_fd ? __WASI_ERRNO_ISDIR : REAL(fd_read)(fd, iovs, count, done);
    __wasi_errno_t error = transfer(h, iovs, count, h->offset, 0, done);
    if (!error) h->offset += *done;
    return error;
}

__wasi_errno_t WRAP(fd_pread)(__wasi_fd_t fd, const __wasi_iovec_t *iovs, size_t count, __wasi_filesize_t offset,
                              __wasi_size_t *done) {
    handle *h = lookup(fd);
    if (h == NULL) return fd == root_fd ? __WASI_ERRNO_ISDIR : REAL(fd_pread)(fd, iovs, count, offset, done);
    return transfer(h, iovs, count, offset, 0, done);
}

__wasi_errno_t WRAP(fd_write)(__wasi_fd_t fd, const __wasi_ciovec_t *iovs, size_t count, __wasi_size_t *done) {
    handle *h = lookup(fd);
    if (h == NULL) return fd == root_fd ? __WASI_ERRNO_ISDIR : REAL(fd_write)(fd, iovs, count, done);
    if (h->flags & __WASI_FDFLAGS_APPEND) h->offset = h->node->size;
    __wasi_errno_t error = transfer(h, (const __wasi_iovec_t *)iovs, count, h->offset, 1, done);
    if (!error) h->offset += *done;
    return error;
}

__wasi_errno_t WRAP(fd_pwrite)(__wasi_fd_t fd, const __wasi_ciovec_t *iovs, size_t count, __wasi_filesize_t offset,
                               __wasi_size_t *done) {
    handle *h = lookup(fd);
    if (h == NULL) return fd == root_fd ? __WASI_ERRNO_ISDIR : REAL(fd_pwrite)(fd, iovs, count, offset, done);
    return transfer(h, (const __wasi_iovec_t *)iovs, count, offset, 1, done);
}

__wasi_errno_t WRAP(fd_seek)(__wasi_fd_t fd, __wasi_filedelta_t delta, __wasi_whence_t whence,
                             __wasi_filesize_t *position) {
    handle *h = lookup(fd);
    if (h == NULL) return fd == root_fd ? __WASI_ERRNO_ISDIR : REAL(fd_seek)(fd, delta, whence, position);
    int64_t base = whence == __WASI_WHENCE_SET ? 0 : whence == __WASI_WHENCE_CUR ? (int64_t)h->offset
                 : whence == __WASI_WHENCE_END ? (int64_t)h->node->size : -1;
    if (base < 0 || base + delta < 0) return __WASI_ERRNO_INVAL;
    h->offset = (uint64_t)(base + delta);
    *position = h->offset;
    return 0;
}

__wasi_errno_t WRAP(fd_tell)(__wasi_fd_t fd, __wasi_filesize_t *position) {
    handle *h = lookup(fd);
    if (h == NULL) return fd == root_fd ? __WASI_ERRNO_ISDIR : REAL(fd_tell)(fd, position);
    *position = h->offset;
    return 0;
}

__wasi_errno_t WRAP(fd_close)(__wasi_fd_t fd) {
    if (fd == root_fd) return 0; /* /tmp stays */
    handle *h = lookup(fd);
    if (h == NULL) return REAL(fd_close)(fd);
    node *n = h->node;
    h->used = 0;
    n->open_count--;
    free_if_unused(n);
    return 0;
}

__wasi_errno_t WRAP(fd_sync)(__wasi_fd_t fd) { return ours(fd) ? 0 : REAL(fd_sync)(fd); }

__wasi_errno_t WRAP(fd_datasync)(__wasi_fd_t fd) { return ours(fd) ? 0 : REAL(fd_datasync)(fd); }

__wasi_errno_t WRAP(fd_advise)(__wasi_fd_t fd, __wasi_filesize_t offset, __wasi_filesize_t length,
                               __wasi_advice_t advice) {
    return ours(fd) ? 0 : REAL(fd_advise)(fd, offset, length, advice);
}

__wasi_errno_t WRAP(fd_allocate)(__wasi_fd_t fd, __wasi_filesize_t offset, __wasi_filesize_t length) {
    handle *h = lookup(fd);
    if (h == NULL) return fd == root_fd ? __WASI_ERRNO_ISDIR : REAL(fd_allocate)(fd, offset, length);
    if (h->node->is_dir) return __WASI_ERRNO_ISDIR;
    return offset + length > h->node->size ? set_size(h->node, offset + length) : 0;
}

__wasi_errno_t WRAP(fd_fdstat_get)(__wasi_fd_t fd, __wasi_fdstat_t *stat) {
    node *n = directory_of(fd);
    if (n == NULL) return REAL(fd_fdstat_get)(fd, stat);
    handle *h = lookup(fd);
    stat->fs_filetype = n->is_dir ? __WASI_FILETYPE_DIRECTORY : __WASI_FILETYPE_REGULAR_FILE;
    stat->fs_flags = h != NULL ? h->flags : 0;
    stat->fs_rights_base = ALL_RIGHTS;
    stat->fs_rights_inheriting = ALL_RIGHTS;
    if (h != NULL && !h->readable) stat->fs_rights_base &= ~__WASI_RIGHTS_FD_READ;
    if (h != NULL && !h->writable) stat->fs_rights_base &= ~__WASI_RIGHTS_FD_WRITE;
    return 0;
}

__wasi_errno_t WRAP(fd_fdstat_set_flags)(__wasi_fd_t fd, __wasi_fdflags_t flags) {
    handle *h = lookup(fd);
    if (h == NULL) return fd == root_fd ? 0 : REAL(fd_fdstat_set_flags)(fd, flags);
    h->flags = flags;
    return 0;
}

__wasi_errno_t WRAP(fd_filestat_get)(__wasi_fd_t fd, __wasi_filestat_t *stat) {
    node *n = directory_of(fd);
    if (n == NULL) return REAL(fd_filestat_get)(fd, stat);
    stat_of(n, stat);
    return 0;
}

__wasi_errno_t WRAP(fd_filestat_set_size)(__wasi_fd_t fd, __wasi_filesize_t size) {
    handle *h = lookup(fd);
    if (h == NULL) return fd == root_fd ? __WASI_ERRNO_ISDIR : REAL(fd_filestat_set_size)(fd, size);
    if (h->node->is_dir) return __WASI_ERRNO_ISDIR;
    if (!h->writable) return __WASI_ERRNO_BADF;
    return set_size(h->node, size);
}

static void set_times(node *n, __wasi_timestamp_t atim, __wasi_timestamp_t mtim, __wasi_fstflags_t flags) {
    __wasi_timestamp_t time = now();
    if (flags & __WASI_FSTFLAGS_ATIM) n->atim = atim;
    if (flags & __WASI_FSTFLAGS_ATIM_NOW) n->atim = time;
    if (flags & __WASI_FSTFLAGS_MTIM) n->mtim = mtim;
    if (flags & __WASI_FSTFLAGS_MTIM_NOW) n->mtim = time;
}

__wasi_errno_t WRAP(fd_filestat_set_times)(__wasi_fd_t fd, __wasi_timestamp_t atim, __wasi_timestamp_t mtim,
                                           __wasi_fstflags_t flags) {
    node *n = directory_of(fd);
    if (n == NULL) return REAL(fd_filestat_set_times)(fd, atim, mtim, flags);
    set_times(n, atim, mtim, flags);
    return 0;
}

/* Entries from `cookie` on: ".", "..", then the children in order.  An
 * entry that does not fit is cut at the end of the buffer (wasi-libc then
 * asks again with a larger one). */
__wasi_errno_t WRAP(fd_readdir)(__wasi_fd_t fd, uint8_t *buffer, __wasi_size_t size, __wasi_dircookie_t cookie,
                                __wasi_size_t *used) {
    node *dir = directory_of(fd);
    if (dir == NULL) return REAL(fd_readdir)(fd, buffer, size, cookie, used);
    if (!dir->is_dir) return __WASI_ERRNO_NOTDIR;
    __wasi_size_t at = 0;
    node *c = dir->first_child;
    for (__wasi_dircookie_t index = 0; at < size; index++) {
        node *entry;
        const char *name;
        if (index == 0) {
            entry = dir, name = ".";
        } else if (index == 1) {
            entry = dir->parent != NULL ? dir->parent : dir, name = "..";
        } else {
            if (c == NULL) break;
            entry = c, name = c->name;
            c = c->next_sibling;
        }
        if (index < cookie) continue;
        __wasi_dirent_t header = {.d_next = index + 1, .d_ino = entry->ino, .d_namlen = (uint32_t)strlen(name),
                                  .d_type = entry->is_dir ? __WASI_FILETYPE_DIRECTORY : __WASI_FILETYPE_REGULAR_FILE};
        __wasi_size_t piece = size - at < sizeof header ? size - at : (__wasi_size_t)sizeof header;
        memcpy(buffer + at, &header, piece);
        at += piece;
        piece = size - at < header.d_namlen ? size - at : header.d_namlen;
        memcpy(buffer + at, name, piece);
        at += piece;
    }
    *used = at;
    return 0;
}

__wasi_errno_t WRAP(fd_renumber)(__wasi_fd_t fd, __wasi_fd_t to) {
    if (ours(fd) || ours(to)) return __WASI_ERRNO_NOTSUP;
    return REAL(fd_renumber)(fd, to);
}

__wasi_errno_t WRAP(path_create_directory)(__wasi_fd_t fd, const char *path) {
    node *dir = directory_of(fd);
    if (dir == NULL) return REAL(path_create_directory)(fd, path);
    node *parent, *found;
    const char *name;
    size_t length;
    __wasi_errno_t error = resolve(dir, path, &parent, &name, &length, &found);
    if (error) return error;
    if (found != NULL) return __WASI_ERRNO_EXIST;
    node *created = new_node(name, length, 1);
    if (created == NULL) return __WASI_ERRNO_NOSPC;
    attach(parent, created);
    return 0;
}

__wasi_errno_t WRAP(path_filestat_get)(__wasi_fd_t fd, __wasi_lookupflags_t flags, const char *path,
                                       __wasi_filestat_t *stat) {
    node *dir = directory_of(fd), *found;
    if (dir == NULL) return REAL(path_filestat_get)(fd, flags, path, stat);
    __wasi_errno_t error = find(dir, path, &found);
    if (!error) stat_of(found, stat);
    return error;
}

__wasi_errno_t WRAP(path_filestat_set_times)(__wasi_fd_t fd, __wasi_lookupflags_t flags, const char *path,
                                             __wasi_timestamp_t atim, __wasi_timestamp_t mtim,
                                             __wasi_fstflags_t fst_flags) {
    node *dir = directory_of(fd), *found;
    if (dir == NULL) return REAL(path_filestat_set_times)(fd, flags, path, atim, mtim, fst_flags);
    __wasi_errno_t error = find(dir, path, &found);
    if (!error) set_times(found, atim, mtim, fst_flags);
    return error;
}

__wasi_errno_t WRAP(path_link)(__wasi_fd_t old_fd, __wasi_lookupflags_t flags, const char *old_path,
                               __wasi_fd_t new_fd, const char *new_path) {
    if (ours(old_fd) || ours(new_fd)) return __WASI_ERRNO_NOTSUP;
    return REAL(path_link)(old_fd, flags, old_path, new_fd, new_path);
}

__wasi_errno_t WRAP(path_symlink)(const char *old_path, __wasi_fd_t fd, const char *new_path) {
    if (ours(fd)) return __WASI_ERRNO_NOTSUP;
    return REAL(path_symlink)(old_path, fd, new_path);
}

__wasi_errno_t WRAP(path_readlink)(__wasi_fd_t fd, const char *path, uint8_t *buffer, __wasi_size_t size,
                                   __wasi_size_t *used) {
    if (ours(fd)) return __WASI_ERRNO_INVAL; /* nothing here is a symlink */
    return REAL(path_readlink)(fd, path, buffer, size, used);
}

static __wasi_errno_t remove_entry(__wasi_fd_t fd, const char *path, int want_dir) {
    node *parent, *found;
    const char *name;
    size_t length;
    __wasi_errno_t error = resolve(directory_of(fd), path, &parent, &name, &length, &found);
    if (error) return error;
    if (found == NULL) return __WASI_ERRNO_NOENT;
    if (length == 0) return found == &root ? __WASI_ERRNO_BUSY : __WASI_ERRNO_INVAL; /* ".", "..", /tmp itself */
    if (want_dir && !found->is_dir) return __WASI_ERRNO_NOTDIR;
    if (!want_dir && found->is_dir) return __WASI_ERRNO_ISDIR;
    if (found->first_child != NULL) return __WASI_ERRNO_NOTEMPTY;
    detach(found);
    free_if_unused(found);
    return 0;
}

__wasi_errno_t WRAP(path_remove_directory)(__wasi_fd_t fd, const char *path) {
    if (directory_of(fd) == NULL) return REAL(path_remove_directory)(fd, path);
    return remove_entry(fd, path, 1);
}

__wasi_errno_t WRAP(path_unlink_file)(__wasi_fd_t fd, const char *path) {
    if (directory_of(fd) == NULL) return REAL(path_unlink_file)(fd, path);
    return remove_entry(fd, path, 0);
}

__wasi_errno_t WRAP(path_rename)(__wasi_fd_t fd, const char *old_path, __wasi_fd_t new_fd, const char *new_path) {
    node *old_dir = directory_of(fd), *new_dir = directory_of(new_fd);
    if (old_dir == NULL && new_dir == NULL) return REAL(path_rename)(fd, old_path, new_fd, new_path);
    if (old_dir == NULL || new_dir == NULL) return __WASI_ERRNO_XDEV; /* in or out of /tmp */
    node *from_parent, *from, *to_parent, *to;
    const char *from_name, *to_name;
    size_t from_length, to_length;
    __wasi_errno_t error = resolve(old_dir, old_path, &from_parent, &from_name, &from_length, &from);
    if (error) return error;
    if (from == NULL) return __WASI_ERRNO_NOENT;
    error = resolve(new_dir, new_path, &to_parent, &to_name, &to_length, &to);
    if (error) return error;
    if (from_length == 0 || to_length == 0) return __WASI_ERRNO_BUSY;
    if (from == to) return 0;
    for (node *up = to_parent; up != NULL; up = up->parent)
        if (up == from) return __WASI_ERRNO_INVAL; /* a directory into itself */
    if (to != NULL) {
        if (from->is_dir && !to->is_dir) return __WASI_ERRNO_NOTDIR;
        if (!from->is_dir && to->is_dir) return __WASI_ERRNO_ISDIR;
        if (to->first_child != NULL) return __WASI_ERRNO_NOTEMPTY;
    }
    char *name = malloc(to_length + 1);
    if (name == NULL) return __WASI_ERRNO_NOSPC;
    memcpy(name, to_name, to_length);
    name[to_length] = 0;
    if (to != NULL) {
        detach(to);
        free_if_unused(to);
    }
    detach(from);
    free(from->name);
    from->name = name;
    attach(to_parent, from);
    from->ctim = now();
    return 0;
}
