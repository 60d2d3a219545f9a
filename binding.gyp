{
  # CI: node-gyp rebuild --werror=1. sanitize=1: the sanitizer build of npm run test:asan (never shipped;
  # scripts/test-asan.sh builds it in build-asan/, away from build/Release). Not named asan: Node's
  # common.gypi has an asan variable of its own.
  'variables': { 'werror%': 0, 'sanitize%': 0 },
  'targets': [{
    'target_name': 'fdpass',
    'sources': [ 'native/addon.cc', 'native/errors.cc', 'native/poll_base.cc', 'native/channel_poller.cc', 'native/channel_poller_send.cc',
                 'native/accept_poller.cc', 'native/functions.cc',
                 'native/sys/message_io.cc', 'native/sys/unix_socket.cc',
                 'native/sys/inet_socket.cc', 'native/sys/introspect.cc', 'native/sys/fd_table.cc',
                 'native/sys/close_fds.cc' ],
    'dependencies': [ "<!(node -p \"require('node-addon-api').targets\"):node_addon_api" ],
    # NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS: a napi call that fails because JS can no longer run
    # (Worker terminate, env teardown) must not abort the process.
    'defines': [ 'NAPI_VERSION=8', 'NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS', 'NODE_ADDON_API_DISABLE_DEPRECATED', '_GNU_SOURCE' ],
    'cflags_cc': [ '-std=c++17', '-fvisibility=hidden', '-fvisibility-inlines-hidden',
                   '-Wall', '-Wextra', '-Wpedantic', '-Wconversion' ],
    'ldflags': [ '-Wl,-z,relro,-z,now', '-Wl,--exclude-libs,ALL' ],
    'conditions': [
      ['werror==1', { 'cflags_cc': [ '-Werror' ] }],
      # ASan + UBSan; any UB report aborts (-fno-sanitize-recover). -O1 and frame pointers for stacks.
      ['sanitize==1', {
        'sources': [ 'native/sanitizer_build.cc' ],  # UBSan's log path; test:asan's deliberate bugs
        'defines': [ 'FDPASS_SANITIZER_BUILD' ],
        'cflags_cc': [ '-fsanitize=address,undefined', '-fno-sanitize-recover=undefined',
                       '-fno-omit-frame-pointer', '-g', '-O1' ],
        'ldflags': [ '-fsanitize=address,undefined' ],
      }],
    ],
  }]
}
