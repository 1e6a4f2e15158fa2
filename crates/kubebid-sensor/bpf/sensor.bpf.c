// SPDX-License-Identifier: GPL-2.0
// KubeBid's node sensor, kernel side. CO-RE: the structures below declare only the fields read, and the
// loader relocates them against the running kernel's BTF. Events go to user space through one ring buffer;
// a reservation that fails is counted in `lost`. Only system calls some loaded rule can need leave the
// kernel: user space marks them in `wanted`.
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u32 u32;
typedef __u64 u64;
typedef int pid_t;
typedef __u32 __be32;
typedef __u16 __be16;
typedef __u32 __wsum;
enum { BPF_MAP_TYPE_HASH = 1, BPF_MAP_TYPE_ARRAY = 2, BPF_MAP_TYPE_PERCPU_ARRAY = 6, BPF_MAP_TYPE_LPM_TRIE = 11,
       BPF_MAP_TYPE_RINGBUF = 27 };
enum { BPF_F_NO_PREALLOC = 1 };
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

typedef struct { unsigned int val; } kuid_t;
typedef struct { unsigned int val; } kgid_t;

struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t euid;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
} __attribute__((preserve_access_index));

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path root;
	struct path pwd;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct {
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	const struct cred *real_cred;
	struct mm_struct *mm;
	struct fs_struct *fs;
	struct files_struct *files;
	char comm[16];
} __attribute__((preserve_access_index));

struct linux_binprm {
	const char *filename;
} __attribute__((preserve_access_index));

struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long r10;
	unsigned long r8;
	unsigned long r9;
} __attribute__((preserve_access_index));

#define STR 256

struct event {
	__u64 ts;
	__u64 cgroup;
	__s64 ret;
	__u64 args[3];
	__u32 kind;
	__u32 tgid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 str_len;
	__u32 args_len;
	__u32 nr;
	__u32 flags;
	char comm[16];
	char str[STR];
	char argv[STR];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline void fill(struct event *e, struct task_struct *t)
{
	e->ts = bpf_ktime_get_boot_ns();
	e->cgroup = bpf_get_current_cgroup_id();
	e->tgid = t->tgid;
	e->ppid = t->real_parent->tgid;
	e->uid = t->real_cred->uid.val;
	e->gid = t->real_cred->gid.val;
	e->euid = t->real_cred->euid.val;
	__builtin_memcpy(e->comm, t->comm, 16);
}

static __always_inline void count_lost(void)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&lost, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 512);
	__type(key, __u32);
	__type(value, __u8);
} wanted SEC(".maps");

/* `prefixlen` and `str` together are a key of `paths` (an LPM trie key: a bit count, then the bytes). */
struct pending {
	__u64 nr;
	__u64 args[3];
	__u32 str_len;
	__u32 flags;
	__u32 pad;
	__u32 prefixlen;
	char str[STR];
};

/* The sensitive paths whose opens leave the kernel. An entry for a file is its path with the closing NUL
 * (so `/etc/shadow` does not match `/etc/shadowed`); one for a directory ends in `/` without it, and
 * matches everything below. */
struct path_key {
	__u32 prefixlen;
	char path[STR];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct path_key);
	__type(value, __u8);
} paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pending);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pending);
} scratch SEC(".maps");

/* x86_64 system call numbers whose string argument is read: mount's file system type, and the opens'
 * paths. */
#define NR_OPEN 2
#define NR_CREAT 85 /* open(path, O_CREAT|O_WRONLY|O_TRUNC, mode) */
#define NR_MOUNT 165
#define NR_OPENAT 257
#define NR_OPENAT2 437

/* Event flags. The path was longer than the buffer. */
#define F_TRUNCATED 1
/* The path is not the plain absolute spelling the trie can match (relative, `//`, `/./`, `/../`, or a
 * `/proc/<pid>/{root,cwd,fd}` magic link): user space resolves it and decides. */
#define F_UNRESOLVED 2
/* `argv` holds the components of the directory a relative path starts from, `args_len` of them. */
#define F_RELATIVE 8

/* The directory a relative path starts from: its components, leaf first, in 32-byte slots of `out` (the
 * record's argv area), walked up through mounts to the process's root. Returns how many, with
 * F_DEEP set in `*flags` when the directory is deeper than the slots. */
#define SLOT 32
#define SLOTS (STR / SLOT)
#define F_DEEP 4

static __always_inline __u32 walk(struct path *from, struct path *root, char *out, __u32 *flags)
{
	struct dentry *d = BPF_CORE_READ(from, dentry);
	struct vfsmount *vm = BPF_CORE_READ(from, mnt);
	struct dentry *root_d = BPF_CORE_READ(root, dentry);
	struct vfsmount *root_m = BPF_CORE_READ(root, mnt);
	struct mount *m = (struct mount *)((char *)vm - bpf_core_field_offset(struct mount, mnt));
	__u32 n = 0;
	for (int i = 0; i < SLOTS + 8; i++) {
		if (d == root_d && vm == root_m)
			return n;
		struct dentry *mnt_root = BPF_CORE_READ(vm, mnt_root);
		if (d == mnt_root) {
			struct mount *parent = BPF_CORE_READ(m, mnt_parent);
			if (parent == m)
				return n; /* the namespace's first mount: above the process's root */
			d = BPF_CORE_READ(m, mnt_mountpoint);
			m = parent;
			vm = (struct vfsmount *)((char *)m + bpf_core_field_offset(struct mount, mnt));
			continue;
		}
		if (n >= SLOTS) {
			*flags |= F_DEEP;
			return n;
		}
		const unsigned char *name = BPF_CORE_READ(d, d_name.name);
		bpf_probe_read_kernel_str(out + (n & (SLOTS - 1)) * SLOT, SLOT, name);
		n++;
		d = BPF_CORE_READ(d, d_parent);
	}
	*flags |= F_DEEP;
	return n;
}

/* The directory a relative open starts from: the working directory, or the directory `dirfd` is open on. */
static __always_inline __u32 start_dir(struct task_struct *t, long dirfd, char *out, __u32 *flags)
{
	struct fs_struct *fs = BPF_CORE_READ(t, fs);
	struct path root, from;
	bpf_probe_read_kernel(&root, sizeof(root), &fs->root);
	if (dirfd == -100) {
		bpf_probe_read_kernel(&from, sizeof(from), &fs->pwd);
	} else {
		struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
		if (dirfd < 0 || dirfd >= BPF_CORE_READ(fdt, max_fds))
			return 0;
		struct file **fds = BPF_CORE_READ(fdt, fd);
		struct file *f = 0;
		bpf_probe_read_kernel(&f, sizeof(f), &fds[dirfd]);
		if (!f)
			return 0;
		bpf_probe_read_kernel(&from, sizeof(from), &f->f_path);
	}
	return walk(&from, &root, out, flags);
}

/* Whether `s` (of `n` bytes with its NUL) is a spelling the trie cannot judge. */
static __always_inline int unresolved(const char *s, long n)
{
	if (s[0] != '/')
		return 1;
	if (s[1] == 'p' && s[2] == 'r' && s[3] == 'o' && s[4] == 'c' && s[5] == '/') {
		/* /proc/<pid>/root/..., cwd/..., fd/<n>/..., task/...: another spelling of any path. */
		for (int i = 6; i < 32; i++) {
			if (i + 1 >= n || s[i] == 0)
				break;
			if (s[i] != '/')
				continue;
			const char *r = s + i + 1;
			if ((r[0] == 'r' && r[1] == 'o' && r[2] == 'o' && r[3] == 't' && r[4] == '/') ||
			    (r[0] == 'c' && r[1] == 'w' && r[2] == 'd' && r[3] == '/') ||
			    (r[0] == 'f' && r[1] == 'd' && r[2] == '/') ||
			    (r[0] == 't' && r[1] == 'a' && r[2] == 's' && r[3] == 'k' && r[4] == '/'))
				return 1;
			break;
		}
	}
	for (int i = 0; i < STR - 3; i++) {
		if (i + 1 >= n)
			break;
		if (s[i] != '/')
			continue;
		char b = s[i + 1];
		if (b == '/')
			return 1;
		if (b != '.')
			continue;
		char c = s[i + 2];
		if (c == '/' || c == 0)
			return 1;
		if (c == '.' && (s[i + 3] == '/' || s[i + 3] == 0))
			return 1;
	}
	return 0;
}

/* For an open: reads the path and flags, and whether the path is one some rule can need. */
static __always_inline int open_wanted(struct pending *p, struct pt_regs *regs, __u32 nr)
{
	int by_path = nr == NR_OPEN || nr == NR_CREAT;
	const char *path = (const char *)(by_path ? regs->di : regs->si);
	p->args[0] = by_path ? (__u64)-100 : regs->di; /* dirfd; AT_FDCWD for open and creat */
	if (nr == NR_OPEN) {
		p->args[1] = regs->si;
		p->args[2] = regs->dx;
	} else if (nr == NR_CREAT) {
		p->args[1] = 01 | 0100 | 01000; /* O_WRONLY | O_CREAT | O_TRUNC */
		p->args[2] = regs->si;
	} else if (nr == NR_OPENAT) {
		p->args[1] = regs->dx;
		p->args[2] = regs->r10;
	} else {
		__u64 how[2] = {0, 0}; /* struct open_how: flags, mode */
		bpf_probe_read_user(how, sizeof(how), (void *)regs->dx);
		p->args[1] = how[0];
		p->args[2] = how[1];
	}
	long n = bpf_probe_read_user_str(p->str, STR, path);
	if (n <= 0)
		return 0;
	p->str_len = n;
	if (n >= STR) {
		p->flags = F_TRUNCATED | F_UNRESOLVED;
		return 1;
	}
	if (unresolved(p->str, n)) {
		p->flags = F_UNRESOLVED;
		return 1;
	}
	p->prefixlen = STR * 8;
	return bpf_map_lookup_elem(&paths, &p->prefixlen) != 0;
}

/* The sensor's own process: its calls (bpf() to read its maps, opens of /proc) are not reported, or each
 * one it handles would make another. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} self_tgid SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(on_enter, struct pt_regs *regs, long id)
{
	__u32 nr = id;
	if (nr >= 512)
		return 0;
	__u8 *w = bpf_map_lookup_elem(&wanted, &nr);
	if (!w || !*w)
		return 0;
	__u32 zero_key = 0;
	__u32 *me = bpf_map_lookup_elem(&self_tgid, &zero_key);
	if (me && *me == (__u32)(bpf_get_current_pid_tgid() >> 32))
		return 0;
	__u32 zero = 0;
	struct pending *p = bpf_map_lookup_elem(&scratch, &zero);
	if (!p)
		return 0;
	p->nr = nr;
	p->args[0] = regs->di;
	p->args[1] = regs->si;
	p->args[2] = regs->dx;
	p->str_len = 0;
	p->flags = 0;
	if (nr == NR_OPEN || nr == NR_CREAT || nr == NR_OPENAT || nr == NR_OPENAT2) {
		if (!open_wanted(p, regs, nr))
			return 0;
	} else if (nr == NR_MOUNT) {
		long n = bpf_probe_read_user_str(p->str, STR, (void *)regs->dx);
		p->str_len = n > 0 ? n : 0;
		p->args[2] = regs->r10; /* mount flags */
	}
	__u64 key = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&inflight, &key, p, 0);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(on_exit, struct pt_regs *regs, long ret)
{
	__u64 key = bpf_get_current_pid_tgid();
	struct pending *p = bpf_map_lookup_elem(&inflight, &key);
	if (!p)
		return 0;
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost();
		bpf_map_delete_elem(&inflight, &key);
		return 0;
	}
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	fill(e, t);
	e->kind = 2;
	e->ret = ret;
	e->nr = p->nr;
	e->args[0] = p->args[0];
	e->args[1] = p->args[1];
	e->args[2] = p->args[2];
	e->flags = p->flags;
	e->args_len = 0;
	__u32 n = p->str_len;
	if (n > STR)
		n = STR;
	e->str_len = n;
	bpf_probe_read_kernel(e->str, STR, p->str);
	if ((p->flags & F_UNRESOLVED) && p->str[0] != '/') {
		__u32 fl = e->flags;
		e->args_len = start_dir(t, (int)p->args[0], e->argv, &fl); /* the call's int, upper half unset */
		e->flags = fl | F_RELATIVE;
	}
	bpf_map_delete_elem(&inflight, &key);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return 0;
	}
	fill(e, p);
	e->kind = 1;
	e->flags = 0;
	e->ret = 0;
	e->nr = 59;
	long n = bpf_probe_read_kernel_str(e->str, STR, bprm->filename);
	e->str_len = n > 0 ? n : 0;
	unsigned long start = p->mm->arg_start, end = p->mm->arg_end;
	unsigned long len = end - start;
	if (len > STR)
		len = STR;
	e->args_len = 0;
	if (len > 0 && bpf_probe_read_user(e->argv, len & (STR - 1) ? len & (STR - 1) : STR, (void *)start) == 0)
		e->args_len = len;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
