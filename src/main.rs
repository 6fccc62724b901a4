/// Bounds the memory a template may take (see `promptgate::memory`).
#[global_allocator]
static ALLOCATOR: promptgate::memory::Counting = promptgate::memory::Counting;

fn main() {
    std::process::exit(promptgate::cli::main());
}
