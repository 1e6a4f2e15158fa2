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
enum { BPF_MAP_TYPE_HASH = 1, BPF_MAP_TYPE_ARRAY = 2, BPF_MAP_TYPE_PERCPU_ARRAY = 6, BPF_MAP_TYPE_RINGBUF = 27 };
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

struct task_struct {
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	const struct cred *real_cred;
	struct mm_struct *mm;
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
	__u32 pad;
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

struct pending {
	__u64 nr;
	__u64 args[3];
	char str[STR];
	__u32 str_len;
};

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

/* x86_64 system call numbers whose string argument is read: mount's file system type. */
#define NR_MOUNT 165

SEC("tp_btf/sys_enter")
int BPF_PROG(on_enter, struct pt_regs *regs, long id)
{
	__u32 nr = id;
	if (nr >= 512)
		return 0;
	__u8 *w = bpf_map_lookup_elem(&wanted, &nr);
	if (!w || !*w)
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
	if (nr == NR_MOUNT) {
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
	e->args_len = 0;
	__u32 n = p->str_len;
	if (n > STR)
		n = STR;
	e->str_len = n;
	bpf_probe_read_kernel(e->str, STR, p->str);
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
