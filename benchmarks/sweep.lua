-- wrk script for goal 5: every request authenticates with the next token of a file, so the
-- server meets as many distinct tokens as requests (its caches must stay bounded).
-- BENCH_TOKENS_FILE: one token per line; each thread takes every BENCH_THREADS-th one,
-- starting after the first BENCH_OFFSET tokens (where the previous run stopped).

local counter = 0

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
end

function init(args)
  tokens = {}
  for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
    tokens[#tokens + 1] = line
  end
  step = tonumber(os.getenv("BENCH_THREADS") or "2")
  position = tonumber(os.getenv("BENCH_OFFSET") or "0") + thread_index
end

function request()
  local token = tokens[(position % #tokens) + 1]
  position = position + step
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. token })
end
