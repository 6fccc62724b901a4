//! A memory budget for work whose size the input decides: rendering a template.
//!
//! minijinja's fuel bounds how many instructions a template runs, not how large the strings it
//! builds grow: `{% set s = s ~ s %}` doubles a string in one instruction, so forty of them
//! (unrolled, or in a loop over a namespace) ask for a terabyte, and `replace` or list `+`
//! multiply the same way. Rules on the template's syntax would be evaded by the next trick, and
//! minijinja has no hook between instructions, so the bound sits below it: the binary installs
//! [`Counting`] as its global allocator, which counts the bytes a thread holds while a [`Budget`]
//! is open on it.
//!
//! When a render passes its budget, the allocator writes the budget's prepared message to stderr
//! and ends the process with [`exit_code::BAD_INPUT`]. It cannot hand the render an error
//! instead: an allocator that returns null makes Rust abort with a message that names nothing,
//! and one that unwinds is undefined behaviour. Nothing stored is lost (SQLite commits
//! atomically), and a suite's prompts are rendered before its first call. A judge's rubric is
//! rendered while other answers may be on their way to the cache, but only after it rendered
//! for every case with an empty answer before the first call: only a rubric that grows with the
//! answer itself can end a run with answers unstored, which the next run fetches again.
//!
//! A library user that keeps the system allocator gets no bound (the budget then costs nothing);
//! fuel and the size of the rendered text are still checked.
//!
//! Below the count sits mimalloc, not the C library's allocator: a run makes about ten small
//! allocations per case and frees most of them case by case (a rendered prompt, a response
//! read from the cache, its grade). On the scale benchmark's 250,000 cached samples, glibc's
//! malloc, free and consolidation took a fifth of a replay's time. mimalloc is built without
//! transparent huge pages (Cargo feature `no_thp`) and [`tune_allocator`] makes it return
//! freed pages at once: with its defaults it kept more memory than glibc.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

use crate::exit_code;

/// What a render may hold beyond the case's data: its output is at most 16 MiB (see
/// [`crate::prompt::MAX_RENDERED_BYTES`]), and copying a whole finding into it costs about four
/// times the finding's JSON, so a template that needs more than this builds what no prompt sends.
pub const RENDER_BUDGET: usize = 256 * 1024 * 1024;

/// No budget is open on this thread.
const UNBOUNDED: usize = usize::MAX;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread since its budget opened. Memory freed
    /// here that another thread allocated, or that existed before, can make the true figure
    /// lower than this; the count never goes below zero.
    static HELD: Cell<usize> = const { Cell::new(0) };
    /// The most [`HELD`] has been since the budget opened.
    static PEAK: Cell<usize> = const { Cell::new(0) };
    /// The open budget's limit, or [`UNBOUNDED`].
    static LIMIT: Cell<usize> = const { Cell::new(UNBOUNDED) };
    /// The open budget's message: pointer and length of bytes the [`Budget`] owns.
    static MESSAGE: Cell<(*const u8, usize)> = const { Cell::new((std::ptr::null(), 0)) };
}

/// mimalloc, counting what a thread holds while a [`Budget`] is open on it.
pub struct Counting;

impl Counting {
    fn charge(bytes: usize) {
        // `try_with`: a thread being torn down still allocates; it has no budget.
        let _ = LIMIT.try_with(|limit| {
            let limit = limit.get();
            if limit == UNBOUNDED {
                return;
            }
            let _ = HELD.try_with(|held| {
                let now = held.get().saturating_add(bytes);
                held.set(now);
                if now > limit {
                    over_budget();
                }
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
            });
        });
    }

    fn refund(bytes: usize) {
        let _ = LIMIT.try_with(|limit| {
            if limit.get() != UNBOUNDED {
                let _ = HELD.try_with(|held| held.set(held.get().saturating_sub(bytes)));
            }
        });
    }
}

/// Say why and end the process: no allocation, no unwinding, no destructors (see the module
/// documentation for why nothing is lost).
#[cold]
fn over_budget() -> ! {
    let (pointer, length) = MESSAGE.try_with(Cell::get).unwrap_or((std::ptr::null(), 0));
    if !pointer.is_null() {
        // SAFETY: the open `Budget` owns these bytes until it is dropped, which cannot happen
        // while this thread is inside an allocation it made.
        let message = unsafe { std::slice::from_raw_parts(pointer, length) };
        let mut written = 0;
        while written < message.len() {
            // SAFETY: writing initialized bytes to the standard error descriptor.
            let n = unsafe { libc::write(2, message[written..].as_ptr().cast(), message.len() - written) };
            if n <= 0 {
                break;
            }
            written += n as usize;
        }
    }
    // SAFETY: `_exit` ends the process without running anything of this one.
    unsafe { libc::_exit(exit_code::BAD_INPUT) }
}

// SAFETY: every call is passed to `MiMalloc` unchanged; the counting only reads and writes
// thread-locals that have no destructor and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Counting::charge(layout.size());
        // SAFETY: the caller's contract is `MiMalloc`'s.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Counting::charge(layout.size());
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        Counting::refund(layout.size());
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            Counting::charge(new_size - layout.size());
        } else {
            Counting::refund(layout.size() - new_size);
        }
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.realloc(pointer, layout, new_size) }
    }
}

/// mimalloc's option that delays returning freed pages to the system, in milliseconds (1,000
/// by default). Its place in `mi_option_t` of mimalloc 3.3, which libmimalloc-sys 0.1.49
/// builds (pinned in Cargo.toml): the crate's Rust constants name only mimalloc 2's options.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Set mimalloc to return freed pages to the system at once: a run frees memory case by case,
/// and by default mimalloc keeps what was freed for a second, which over a run of many cases is
/// a steady 20 to 30 MiB more. Call first thing in `main`. (The other half of the tuning is
/// Cargo's `no_thp` feature: mimalloc otherwise asks for transparent huge pages on its arenas,
/// and each 2 MiB page a thread touches then counts whole.)
///
/// Measured on the scale benchmark's 250,000 cached samples (median peak RSS of a replay):
/// about 95 MiB with mimalloc's defaults, 62 MiB tuned; glibc's malloc took 76 MiB.
pub fn tune_allocator() {
    // SAFETY: setting an option is a plain store into mimalloc's option table, and the number
    // is that option's in the linked mimalloc (the unit test reads its default).
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}

/// A budget open on this thread until dropped. While it is open, holding more than `limit` new
/// bytes on this thread prints `message` and ends the process (under [`Counting`]).
pub struct Budget {
    /// Owned here, read by the allocator through `MESSAGE`.
    _message: Box<[u8]>,
    /// The enclosing budget's limit, held and peak bytes, and message, restored on drop.
    outer: (usize, usize, usize, (*const u8, usize)),
}

impl Budget {
    /// Open a budget of `limit` bytes; `message` is what the process prints if it is passed.
    pub fn open(limit: usize, message: String) -> Budget {
        let message = message.into_bytes().into_boxed_slice();
        // Read the outer budget's state after the message is allocated, so that its allocation
        // is charged to the outer budget and not to this one.
        let outer = (
            LIMIT.with(Cell::get),
            HELD.with(Cell::get),
            PEAK.with(Cell::get),
            MESSAGE.with(Cell::get),
        );
        MESSAGE.with(|m| m.set((message.as_ptr(), message.len())));
        HELD.with(|held| held.set(0));
        PEAK.with(|peak| peak.set(0));
        LIMIT.with(|l| l.set(limit.min(UNBOUNDED - 1)));
        Budget {
            _message: message,
            outer,
        }
    }

    /// The bytes this thread holds since the budget opened, as the allocator counts them (zero
    /// when [`Counting`] is not the global allocator).
    pub fn held(&self) -> usize {
        HELD.with(Cell::get)
    }

    /// The most this thread has held since the budget opened (counted as [`Budget::held`]).
    pub fn peak(&self) -> usize {
        PEAK.with(Cell::get)
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        let (limit, held, peak, message) = self.outer;
        let (inner_held, inner_peak) = (HELD.with(Cell::get), PEAK.with(Cell::get));
        LIMIT.with(|l| l.set(limit));
        MESSAGE.with(|m| m.set(message));
        // What the inner budget held counts against the outer one, as it would have.
        let (held, peak) = if limit == UNBOUNDED {
            (0, 0)
        } else {
            (
                held.saturating_add(inner_held),
                peak.max(held.saturating_add(inner_peak)),
            )
        };
        HELD.with(|h| h.set(held));
        PEAK.with(|p| p.set(peak));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The library's own tests run under the counting allocator, as the binary does.
    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    #[test]
    fn a_budget_counts_what_its_thread_holds_and_nothing_else() {
        let budget = Budget::open(1 << 30, "over".into());
        let held = vec![0u8; 10 << 20];
        let at_peak = budget.held();
        assert!((10 << 20..(10 << 20) + 4096).contains(&at_peak), "{at_peak}");
        // Another thread's allocation is not this budget's.
        std::thread::spawn(|| vec![0u8; 64 << 20].len()).join().unwrap();
        assert!(budget.held() < (10 << 20) + (1 << 20), "{}", budget.held());
        drop(held);
        assert!(budget.held() < 4096, "{}", budget.held());
        // Growing in place is charged by the difference.
        let mut text = String::with_capacity(1 << 20);
        text.reserve(4 << 20);
        assert!(budget.held() >= 4 << 20, "{}", budget.held());
    }

    #[test]
    fn nested_budgets_charge_the_outer_one_with_what_the_inner_kept() {
        let outer = Budget::open(1 << 30, "outer".into());
        let kept = {
            let inner = Budget::open(1 << 30, "inner".into());
            let kept = vec![1u8; 2 << 20];
            assert!(inner.held() >= 2 << 20);
            kept
        };
        assert!(outer.held() >= 2 << 20, "{}", outer.held());
        drop(kept);
        drop(outer);
        // No budget is open now: nothing is counted.
        let _unbounded = vec![0u8; 1 << 20];
        assert_eq!(LIMIT.with(Cell::get), UNBOUNDED);
        assert_eq!(HELD.with(Cell::get), 0);
    }

    /// What sizes [`RENDER_BUDGET`]: converted before the budget opens (as `Prompt::render`
    /// does), a large finding costs a render nothing unless the template copies it, and then
    /// about four times its JSON (the JSON text, then the output's copy, each grown by doubling).
    #[test]
    fn a_render_is_charged_for_its_own_work_not_for_the_case_data() {
        let resources: Vec<serde_json::Value> = (0..100_000)
            .map(|i| serde_json::json!({"Id": format!("arn:aws:ec2:us-east-1:123456789012:instance/i-{i:016x}"), "Type": "AwsEc2Instance"}))
            .collect();
        let context = serde_json::json!({"finding": {"Title": "t", "Resources": resources}});
        let json_bytes = serde_json::to_string(&context["finding"]).unwrap().len();
        let values = minijinja::Value::from_serialize(&context);
        let environment = minijinja::Environment::new();
        let peak = |template: &str| {
            let budget = Budget::open(RENDER_BUDGET, String::new());
            let output = environment.render_str(template, &values).unwrap();
            (budget.peak(), output.len())
        };
        let (title, _) = peak("{{ finding.Title }}");
        assert!(title < 64 * 1024, "{title} bytes to render a title");
        let (whole, output) = peak("{{ finding | tojson }}");
        assert!(
            output >= json_bytes && whole < 5 * json_bytes,
            "{whole} bytes for {json_bytes} of JSON"
        );
    }

    /// The option [`tune_allocator`] sets is the linked mimalloc's purge delay: it reads that
    /// option's documented default (`src/options.c` of mimalloc 3.3: 1000 ms), which no other
    /// option of `mi_option_t` has.
    #[test]
    fn the_tuned_option_is_mimallocs_purge_delay() {
        // SAFETY: reading an option is a plain load from mimalloc's option table.
        let read = |option| unsafe { libmimalloc_sys::mi_option_get(option) };
        assert_eq!(read(PURGE_DELAY), 1000);
        let others = (0..PURGE_DELAY + 8).filter(|option| *option != PURGE_DELAY);
        for other in others {
            assert_ne!(read(other), 1000, "option {other}");
        }
    }
}
