/// mimalloc, bounding the memory a template may take (see `promptgate::memory`).
#[global_allocator]
static ALLOCATOR: promptgate::memory::Counting = promptgate::memory::Counting;

fn main() {
    promptgate::memory::tune_allocator();
    std::process::exit(promptgate::cli::main());
}
