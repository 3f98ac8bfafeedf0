// ESLint flat config: ESLint's and typescript-eslint's recommended rules over
// the server, its tests and the benchmarks. Syntax-only (no type
// information), so it takes seconds and `npm test` can run it every time;
// `npm run typecheck` does the type checking.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'node_modules/', 'test/artifacts/', 'bench/results/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    rules: {
      // A leading underscore marks a parameter kept for its position, such
      // as the fourth one that makes an Express error handler.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // A test registers its cleanup before starting what it cleans up.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    // pm2's process file is CommonJS, loaded with require().
    files: ['ecosystem.config.js'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
