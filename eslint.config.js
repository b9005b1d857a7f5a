// ESLint flat config. The block for src/raft enforces the rule that makes the Raft core
// testable by simulation: it does no I/O, reads no clock, has no randomness of its own and
// never waits (see ARCHITECTURE.md, "Layers").
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const raftForbiddenGlobals = [
  { name: 'Date', message: 'src/raft has no clock: time advances only by tick().' },
  { name: 'setTimeout', message: 'src/raft owns no timers: the driver calls tick().' },
  { name: 'setInterval', message: 'src/raft owns no timers: the driver calls tick().' },
  { name: 'setImmediate', message: 'src/raft owns no timers: the driver calls tick().' },
  { name: 'queueMicrotask', message: 'src/raft never defers work.' },
  { name: 'process', message: 'src/raft does no I/O and reads no environment.' },
  { name: 'Promise', message: 'src/raft is synchronous: inputs return, outputs come from ready().' },
  { name: 'performance', message: 'src/raft has no clock.' },
  { name: 'crypto', message: 'src/raft has no randomness of its own: use the seeded source in its config.' },
  { name: 'fetch', message: 'src/raft does no I/O.' },
  { name: 'require', message: 'src/raft imports only its own files and src/util.' },
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'build/**', '.stratakv/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        console: 'readonly', process: 'readonly', Buffer: 'readonly', setTimeout: 'readonly',
        clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly',
        setImmediate: 'readonly', clearImmediate: 'readonly', TextEncoder: 'readonly',
        TextDecoder: 'readonly', URL: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly',
        performance: 'readonly', queueMicrotask: 'readonly', structuredClone: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    files: ['src/raft/**/*.ts'],
    rules: {
      'no-restricted-globals': ['error', ...raftForbiddenGlobals],
      'no-restricted-properties': ['error',
        { object: 'Math', property: 'random', message: 'src/raft uses the seeded random source from its config.' },
        { object: 'globalThis', message: 'src/raft does not reach for globals.' },
      ],
      'no-restricted-syntax': ['error',
        { selector: 'FunctionDeclaration[async=true]', message: 'src/raft is synchronous: no async functions.' },
        { selector: 'FunctionExpression[async=true]', message: 'src/raft is synchronous: no async functions.' },
        { selector: 'ArrowFunctionExpression[async=true]', message: 'src/raft is synchronous: no async functions.' },
        { selector: 'AwaitExpression', message: 'src/raft is synchronous: no await.' },
        { selector: 'ImportExpression', message: 'src/raft imports only its own files and src/util, statically.' },
      ],
      'no-restricted-imports': ['error', {
        patterns: [
          { regex: '^node:', message: 'src/raft does no I/O: no node: modules.' },
          { regex: '^[^.]', message: 'src/raft imports only its own files and src/util (no packages, no builtins).' },
          { regex: '^\\.\\./(?!util/)', message: 'src/raft may import only src/util from outside src/raft.' },
          { regex: '^\\.\\./\\.\\./', message: 'src/raft may import only src/util from outside src/raft.' },
        ],
      }],
    },
  },
);
